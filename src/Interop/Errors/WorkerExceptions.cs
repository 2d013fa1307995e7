namespace Interop.Errors;

/// <summary>The base of the isolated-mode failures that concern the worker process itself (not Python errors).</summary>
public class WorkerException : InteropException
{
    /// <summary>Creates the exception with a message that names the problem and the fix.</summary>
    public WorkerException(string message, Exception? innerException = null) : base(message, innerException) { }
}

/// <summary>The worker process could not be started, or did not answer its start-up handshake.</summary>
public sealed class WorkerStartException : WorkerException
{
    /// <summary>Creates the exception; <paramref name="stderr"/> is what the worker printed before it failed.</summary>
    public WorkerStartException(string message, string stderr, Exception? innerException = null)
        : base(message + (stderr.Length > 0 ? Environment.NewLine + "Worker output:" + Environment.NewLine + stderr : ""), innerException)
    {
        WorkerOutput = stderr;
    }

    /// <summary>The last lines the worker wrote to its standard error.</summary>
    public string WorkerOutput { get; }
}

/// <summary>
/// The worker process died (a crash, <c>os._exit</c>, a kill) while a call was pending, or a call used an object
/// that lived in a worker that has died. The host process is unaffected; a new call on a module or file
/// reference starts a fresh worker (unless <c>WorkerOptions.RestartAfterCrash</c> is false).
/// </summary>
public sealed class WorkerCrashedException : WorkerException
{
    /// <summary>Creates the exception for worker <paramref name="processId"/>.</summary>
    public WorkerCrashedException(int processId, int? exitCode, string stderr, string? detail = null)
        : base(Describe(processId, exitCode, detail) + (stderr.Length > 0 ? Environment.NewLine + "Worker output (last lines):" + Environment.NewLine + stderr : ""))
    {
        ProcessId = processId;
        ExitCode = exitCode;
        Signal = exitCode is > 128 and < 160 ? exitCode - 128 : null;
        WorkerOutput = stderr;
    }

    /// <summary>The worker's process id.</summary>
    public int ProcessId { get; }

    /// <summary>The worker's exit status as .NET reports it (128 + N for a process ended by signal N); null if unknown.</summary>
    public int? ExitCode { get; }

    /// <summary>The signal that ended the worker (11 = SIGSEGV, 9 = SIGKILL), when one did.</summary>
    public int? Signal { get; }

    /// <summary>The last lines the worker wrote to its standard error (a segfault's Python stack, from faulthandler).</summary>
    public string WorkerOutput { get; }

    private static string Describe(int pid, int? code, string? detail)
    {
        var how = code switch
        {
            null => "ended",
            > 128 and < 160 => $"was killed by signal {code - 128}{SignalName(code.Value - 128)}",
            _ => $"exited with code {code}",
        };
        return $"The isolated Python worker (pid {pid}) {how}{(detail is null ? "" : " " + detail)}. The host process is unaffected; " +
               "objects that lived in that worker are gone. Fix: look at the worker output below; a new call on a module or file " +
               "reference starts a fresh worker.";
    }

    private static string SignalName(int signal) => signal switch
    {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    };
}

/// <summary>A call to the worker did not finish within its timeout; the worker was stopped and will be replaced.</summary>
public sealed class WorkerTimeoutException : WorkerException
{
    /// <summary>Creates the exception for a call abandoned after <paramref name="timeout"/>.</summary>
    public WorkerTimeoutException(TimeSpan timeout, int processId)
        : base($"The call did not finish within {timeout.TotalSeconds:0.###} s; the worker (pid {processId}) running it was stopped " +
               "and the next call starts a fresh one. Fix: raise CallOptions.Timeout or WorkerOptions.DefaultTimeout, or make the Python code faster.")
    {
        Timeout = timeout;
        ProcessId = processId;
    }

    /// <summary>
    /// Creates the exception for an in-process call that ran past <paramref name="timeout"/>: its Python code was interrupted
    /// (no worker to stop; <see cref="ProcessId"/> is this process) and the interpreter stays usable.
    /// </summary>
    public WorkerTimeoutException(TimeSpan timeout)
        : base($"The call did not finish within {timeout.TotalSeconds:0.###} s; its Python code was interrupted (in-process: " +
               "interop_helpers.calls.Interrupted was raised in it at its next bytecode boundary) and the interpreter stays usable. " +
               "Fix: raise CallOptions.Timeout, or make the Python code faster.")
    {
        Timeout = timeout;
        ProcessId = Environment.ProcessId;
        InProcess = true;
    }

    /// <summary>The timeout that expired.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>True when an in-process call was interrupted (no worker was stopped).</summary>
    public bool InProcess { get; }

    /// <summary>The worker that was stopped (for an in-process call: this process).</summary>
    public int ProcessId { get; }
}

/// <summary>A message broke the isolated-mode protocol (bad framing, sizes, offsets or dtypes); nothing outside the shared region was touched.</summary>
public sealed class WorkerProtocolException : WorkerException
{
    /// <summary>Creates the exception naming the offending field.</summary>
    public WorkerProtocolException(string message) : base(message + " (isolated-mode protocol; the message was rejected before any memory was touched)") { }
}
