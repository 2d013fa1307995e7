using Interop.Embedding;
using Interop.Sessions;

namespace Interop.Cli;

/// <summary>
/// The hidden <c>exit-with-gil-held MODE CODE</c> command (the exit tests' child): an in-process session (which imports
/// torch when installed), a thread that keeps the GIL for ever in C code, then Main returns <c>CODE</c>.
/// MODE <c>python-thread</c>: a daemon Python thread runs <c>sum(range(10**13))</c> (after a short sleep); <c>dotnet-call</c>: a .NET
/// background thread is inside a session call that does.
/// </summary>
public static class ExitChild
{
    /// <summary>Returns <paramref name="exitCode"/> while the GIL is held elsewhere.</summary>
    public static int Run(string mode, int exitCode)
    {
        var session = PythonSession.InProcess();
        switch (mode)
        {
            case "python-thread":
                PythonRuntime.Run(() =>
                {
                    // The sleep lets start() return first: it waits for the thread, which then would keep the GIL from it.
                    Python.Runtime.PythonEngine.Exec("import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.3), sum(range(10**13))), daemon=True).start()\n");
                    return 0;
                });
                break;
            case "dotnet-call":
                var eval = session.Import("builtins").GetAttr("eval");
                new Thread(() => eval.Call("sum(range(10**13))")) { IsBackground = true }.Start();
                break;
            default:
                Console.Error.WriteLine($"unknown mode '{mode}' (python-thread or dotnet-call)");
                return 2;
        }
        Thread.Sleep(1500); // the other thread takes the GIL and keeps it
        Console.WriteLine($"{session.Description}; returning {exitCode} with the GIL held by a {mode}");
        return exitCode;
    }
}
