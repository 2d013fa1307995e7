using Interop.Embedding;
using Interop.Isolated;
using Interop.Sessions;

namespace Interop.Tests.Isolated;

/// <summary>Shared set-up of the isolated-mode tests: sessions on the interpreter under test, and process/shm checks.</summary>
internal static class IsolatedTestSupport
{
    public static string Fixture => Path.Combine(TestPython.RepositoryRoot, "tests", "Interop.Tests", "Isolated", "worker_fixture.py");

    public static WorkerOptions Options(int workers = 1, bool restart = true, TimeSpan? timeout = null) => new()
    {
        Python = new PythonOptions { PythonExecutable = TestPython.Executable },
        WorkerCount = workers,
        RestartAfterCrash = restart,
        DefaultTimeout = timeout,
    };

    public static IsolatedSession Session(int workers = 1, bool restart = true, TimeSpan? timeout = null) =>
        (IsolatedSession)PythonSession.Isolated(Options(workers, restart, timeout));

    public static bool ProcessExists(int pid)
    {
        // A zombie (exited, not yet reaped) counts as gone.
        var stat = $"/proc/{pid}/stat";
        if (!File.Exists(stat))
            return false;
        try
        {
            var text = File.ReadAllText(stat);
            var state = text[(text.LastIndexOf(')') + 2)..].Split(' ')[0];
            return state != "Z" && state != "X";
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static bool WaitUntilGone(int pid, TimeSpan limit)
    {
        var until = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < until)
        {
            if (!ProcessExists(pid))
                return true;
            Thread.Sleep(50);
        }
        return !ProcessExists(pid);
    }

    /// <summary>Names in /dev/shm that this library created for host process <paramref name="hostPid"/>.</summary>
    public static string[] ShmLeftovers(int hostPid) =>
        Directory.Exists("/dev/shm") ? Directory.GetFiles("/dev/shm", $"interop-{hostPid}-*") : [];

    /// <summary>Every worker process of host <paramref name="hostPid"/> (by command line), alive.</summary>
    public static int[] WorkersOf(int hostPid)
    {
        var found = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
                continue;
            try
            {
                var cmd = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                var i = Array.IndexOf(cmd, "--host-pid");
                if (cmd.Contains("interop_helpers.worker") && i >= 0 && i + 1 < cmd.Length && cmd[i + 1] == hostPid.ToString(System.Globalization.CultureInfo.InvariantCulture) && ProcessExists(pid))
                    found.Add(pid);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return found.ToArray();
    }
}
