// Design notes: stopping in-process Python code on a timeout or a cancelled token.
// - CPython cannot abort a thread, but it can raise an exception in one: PyThreadState_SetAsyncExc(thread id, type)
//   makes the thread raise the type at its next bytecode boundary (the eval loop checks it with the GIL). The call's
//   thread records its id with the GIL held when it enters the Python call; the timer or token callback takes the GIL,
//   checks under the lock that the call is still inside Python, and sets the exception.
// - Lock order is always GIL, then _lock. Exit (on the call's thread, GIL held) marks the call done and clears an
//   exception that was set but not yet raised, so it can never fire in a later, unrelated call on that thread.
//   Exit only Unregisters the token callback (which does not wait): disposing the registration would wait for a
//   callback that itself waits for the GIL this thread holds.
// - What cannot be interrupted: code that runs no bytecode (one long native call: time.sleep, a big matmul, a C loop).
//   The exception is raised when it returns to the eval loop; the call ends then.
using Interop.Embedding;
using Interop.Errors;
using Python.Runtime;

namespace Interop.Sessions;

/// <summary>Interrupts one in-process call on timeout or cancellation (see the design notes).</summary>
internal sealed unsafe class CallInterrupt : IDisposable
{
    private readonly Lock _lock = new();
    private readonly TimeSpan? _timeout;
    private readonly CancellationToken _cancellationToken;
    private Timer? _timer;
    private CancellationTokenRegistration _registration;
    private nuint _thread;
    private bool _running;
    private string? _reason;

    private CallInterrupt(TimeSpan? timeout, CancellationToken cancellationToken)
    {
        _timeout = timeout;
        _cancellationToken = cancellationToken;
    }

    /// <summary>An interrupt for a call with these limits, or null when there is nothing to enforce.</summary>
    public static CallInterrupt? For(TimeSpan? timeout, CancellationToken cancellationToken) =>
        timeout is not null && timeout != System.Threading.Timeout.InfiniteTimeSpan || cancellationToken.CanBeCanceled
            ? new CallInterrupt(timeout == System.Threading.Timeout.InfiniteTimeSpan ? null : timeout, cancellationToken) : null;

    /// <summary>"timeout" or "cancelled" once the call was interrupted; null otherwise.</summary>
    public string? Reason
    {
        get
        {
            lock (_lock)
                return _reason;
        }
    }

    /// <summary>Marks the calling thread (GIL held) as running the Python call and starts the timer and the token callback.</summary>
    public void Enter()
    {
        Gil.AssertHeld();
        _ = InterruptedType; // looked up here, with the GIL, not in the callback
        lock (_lock)
        {
            _thread = Native.CPython.PyThread_get_thread_ident();
            _running = true;
        }
        if (_timeout is { } t)
            _timer = new Timer(_ => Fire("timeout"), null, t, System.Threading.Timeout.InfiniteTimeSpan);
        if (_cancellationToken.CanBeCanceled)
            _registration = _cancellationToken.Register(() => Fire("cancelled"));
    }

    /// <summary>Marks the call done (GIL held) and clears an interrupt that was set but not raised yet.</summary>
    public void Exit()
    {
        Gil.AssertHeld();
        lock (_lock)
        {
            _running = false;
            if (_reason is not null)
                Native.CPython.PyThreadState_SetAsyncExc(_thread, 0);
        }
        _timer?.Dispose(); // does not wait for a callback in progress (that one finds _running false)
        _registration.Unregister(); // does not wait either
    }

    private void Fire(string reason)
    {
        if (!PythonRuntime.IsRunning)
            return;
        using var gil = PythonRuntime.AcquireGil();
        lock (_lock)
        {
            if (!_running || _reason is not null)
                return;
            _reason = reason;
            // Safety: the GIL is held, the thread id belongs to a thread inside the call (_running), the type object lives as long as the interpreter.
            Native.CPython.PyThreadState_SetAsyncExc(_thread, Native.CPython.Address(InterruptedType));
        }
    }

    /// <summary>The exception of an interrupted call: the same types as isolated mode.</summary>
    public Exception Exception(Exception? inner) => Reason switch
    {
        "timeout" => new WorkerTimeoutException(_timeout!.Value),
        _ => new OperationCanceledException("The call was cancelled; its Python code was interrupted (in-process, at its next bytecode boundary) and the interpreter stays usable.", inner, _cancellationToken),
    };

    public void Dispose()
    {
        _timer?.Dispose();
        _registration.Dispose();
    }

    // interop_helpers.calls.Interrupted, looked up once with the GIL.
    private static PyObject? s_interrupted;

    private static PyObject InterruptedType
    {
        get
        {
            Gil.AssertHeld();
            if (s_interrupted is null)
            {
                using var calls = Py.Import(PythonRuntime.HelperPackage + ".calls");
                s_interrupted = calls.GetAttr("Interrupted");
            }
            return s_interrupted;
        }
    }
}
