using Interop.Sessions;

namespace Interop.Cli;

/// <summary>The hidden <c>isolated-child</c> command: starts a worker, maps a shared region, prints the worker's pid, waits.</summary>
public static class IsolatedChild
{
    /// <summary>
    /// Never returns normally; the test that starts it kills it with SIGKILL. With <c>--pass-mib N</c> it then passes
    /// an N MiB argument, so that the test can kill it while the large request region is being created.
    /// </summary>
    public static int Run(IReadOnlyList<string> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var session = PythonSession.Isolated();
        using var getpid = session.Import("os").GetAttr("getpid");
        using var pid = getpid.Call();
        using var len = session.Import("builtins").GetAttr("len");
        using var n = len.Call(new float[1024]); // maps a request region in the worker
        Console.WriteLine($"worker {pid.AsInt64()}");
        Console.Out.Flush();
        if (options.Count == 2 && options[0] == "--pass-mib" && int.TryParse(options[1], System.Globalization.CultureInfo.InvariantCulture, out var mib))
        {
            var big = GC.AllocateUninitializedArray<float>(mib << 18); // pages not touched: no RAM until copied
            Console.WriteLine("passing");
            Console.Out.Flush();
            using var m = len.Call(big); // a new request region of that size: created, reserved, mapped
        }
        Thread.Sleep(Timeout.Infinite);
        GC.KeepAlive(session);
        return 0;
    }
}
