using Interop.Sessions;

namespace Interop.Cli;

/// <summary>The hidden <c>isolated-child</c> command: starts a worker, maps a shared region, prints the worker's pid, waits.</summary>
public static class IsolatedChild
{
    /// <summary>Never returns normally; the test that starts it kills it with SIGKILL.</summary>
    public static int Run()
    {
        var session = PythonSession.Isolated();
        using var getpid = session.Import("os").GetAttr("getpid");
        using var pid = getpid.Call();
        using var len = session.Import("builtins").GetAttr("len");
        using var n = len.Call(new float[1024]); // maps a request region in the worker
        Console.WriteLine($"worker {pid.AsInt64()}");
        Console.Out.Flush();
        Thread.Sleep(Timeout.Infinite);
        GC.KeepAlive(session);
        return 0;
    }
}
