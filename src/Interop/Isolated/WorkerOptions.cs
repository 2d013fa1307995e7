using Interop.Embedding;

namespace Interop.Isolated;

/// <summary>How an isolated session runs its worker processes. Immutable; share freely.</summary>
public sealed record WorkerOptions
{
    /// <summary>The defaults: one worker, the interpreter discovery finds, restart after a crash, no call timeout.</summary>
    public static WorkerOptions Default { get; } = new();

    /// <summary>
    /// Which CPython runs the workers, found the same way as for in-process use (<see cref="PythonOptions"/>:
    /// <c>PythonExecutable</c>, <c>INTEROP_PYTHON</c>, a virtual environment, <c>python3</c> on PATH). The worker
    /// needs no shared libpython: it is a plain <c>python -m interop_helpers.worker</c>.
    /// </summary>
    public PythonOptions? Python { get; init; }

    /// <summary>
    /// How many worker processes serve calls in parallel (each has its own GIL). Calls on module and file
    /// references go to the least busy worker; objects returned by a call stay in the worker that made them.
    /// </summary>
    public int WorkerCount { get; init; } = 1;

    /// <summary>How long a worker may take to start and answer its handshake.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The timeout of calls whose <see cref="Sessions.CallOptions.Timeout"/> is not set (null: none).</summary>
    public TimeSpan? DefaultTimeout { get; init; }

    /// <summary>
    /// When true (the default), a call after a worker crashed or was stopped starts a fresh worker. When false,
    /// every later call gets the <see cref="Errors.WorkerCrashedException"/> of the dead worker.
    /// </summary>
    public bool RestartAfterCrash { get; init; } = true;

    /// <summary>
    /// Copy each line the workers print to stderr (Python's <c>print</c> goes there too) to this process's stderr, as
    /// <c>[worker PID] line</c>, when the session's <see cref="Sessions.PythonSession.Output"/> is null. True by default
    /// (as in-process, where print() reaches the console); false drops it (the last lines still appear in crash reports).
    /// </summary>
    public bool EchoWorkerOutput { get; init; } = true;
}

/// <summary>Where a <see cref="Sessions.PythonSession"/> runs Python.</summary>
public enum SessionMode
{
    /// <summary>In this process's embedded interpreter (pythonnet): zero-copy, but one libtorch per process.</summary>
    InProcess,
    /// <summary>In worker processes (plain CPython); tensors travel through shared memory; crashes stay in the worker.</summary>
    Isolated,
    /// <summary>Isolated when this process has (or is loading) a libtorch that is not Python's own; otherwise in-process. See docs/isolated.md.</summary>
    Auto,
}
