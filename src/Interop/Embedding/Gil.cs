// Design notes: the GIL as a scoped token.
// - Gil is a ref struct: it cannot be stored on the heap or held across an await, so a GIL taken on one
//   thread is always released on that same thread.
// - The first acquisition on a thread creates a Python thread state for it and keeps it (one
//   PyGILState_Ensure that is never released, followed by PyEval_SaveThread, whose result is kept per thread).
//   Later outermost acquisitions swap the GIL in and out with that state (PyEval_RestoreThread/SaveThread):
//   ~25 ns less per acquisition than PyGILState_Ensure/Release, which look the state up and count again.
// - Nested acquisitions on a thread that holds a token of this library cost no CPython call beyond the check
//   (a counter per thread). That check compares the current thread state with the thread's kept one
//   (PyThreadState_GetUnchecked), not PyGILState_Check, which a subinterpreter switches off (it then answers 1 on
//   every thread, held or not). When the GIL is held on this thread without a token of ours (a Python callback
//   into .NET, pythonnet's Py.GIL()), or PyGILState_Check answers 1 for a thread whose state is not current (checks
//   switched off), the token is a PyGILState_Ensure/Release pair, as before.
// - PyGILState_Check and PyThreadState_GetUnchecked are called without a GC transition (SuppressGCTransition): they only
//   read state, never block and never call back into .NET. Restore/Save may wait for the GIL: normal transitions.
// - The outermost acquisition on a thread drains the releases that finalizers and non-blocking Disposes queued
//   (PendingReleases). A process-wide count of held tokens tells PendingReleases whether a Dispose may wait
//   for the GIL (no thread of this library holds it) or must not (one may hold it indefinitely).
using System.Diagnostics;
using Interop.Native;

namespace Interop.Embedding;

/// <summary>Holds Python's global interpreter lock until disposed. Get one from <see cref="PythonRuntime.AcquireGil"/>.</summary>
/// <example><code>using (PythonRuntime.AcquireGil()) { /* call Python */ }</code></example>
public unsafe ref struct Gil
{
    private const byte None = 0, Nested = 1, Restored = 2, Ensured = 3;
    private static int s_held;
    private int _state;
    private int _outerDepth; // the thread's depth before this token (a .NET call from Python inside a token of ours)
    private byte _kind;

    internal static Gil Acquire()
    {
        // Held on this thread's kept state: inside a token of ours (or pythonnet's Py.GIL on the same state). Asked of the
        // current thread state, not of PyGILState_Check: once a subinterpreter was created that answers 1 on every thread,
        // and a .NET call from Python inside a token of ours (pythonnet releases the GIL around it) would then be taken for
        // nested and run without the GIL.
        var kept = PerThread.ThreadState;
        ref var depth = ref PerThread.Depth; // one thread-static lookup (~5 ns each)
        var current = CPython.PyThreadState_GetUnchecked();
        if (current != 0 && current == kept)
        {
            if (depth > 0)
            {
                depth++; // inside a token of ours: the GIL stays held until the outermost one ends
                return new Gil { _kind = Nested };
            }
        }
        else if (CPython.PyGILState_Check() == 0)
        {
            var state = kept;
            if (state == 0)
            {
                // Safety: the thread does not hold the GIL, so Ensure takes it (creating or finding the thread's state)
                // and SaveThread gives it back, leaving the state registered (its counter stays at 1) for the thread's life.
                CPython.PyGILState_Ensure();
                state = PerThread.ThreadState = CPython.PyEval_SaveThread();
            }
            CPython.PyEval_RestoreThread(state);
            var outer = depth;
            depth = 1;
            Interlocked.Increment(ref s_held);
            PendingReleases.Drain(); // cheap when nothing is queued
            return new Gil { _kind = Restored, _outerDepth = outer };
        }
        // Held on this thread, but not through a token of ours (or gilstate checks are off): count it with CPython.
        var gil = new Gil { _state = CPython.PyGILState_Ensure(), _kind = Ensured, _outerDepth = depth };
        depth = 1;
        Interlocked.Increment(ref s_held);
        return gil;
    }

    /// <summary>True when the calling thread holds the GIL.</summary>
    // The current thread state is this thread's own: unlike PyGILState_Check, still true only for the holder after a
    // subinterpreter switched gilstate checks off (PythonBuffer.ReleaseWithoutWaiting trusts this on foreign threads).
    public static bool IsHeld => CPython.IsLoaded && PythonRuntime.IsRunning &&
                                 CPython.PyThreadState_GetUnchecked() is var current and not 0 && current == CPython.PyGILState_GetThisThreadState();

    /// <summary>Tokens of this library the calling thread holds, nested ones included (for tests).</summary>
    internal static int Depth => PerThread.Depth;

    /// <summary>True while any thread holds a GIL token of this library (for PendingReleases).</summary>
    internal static bool HeldByAnyThread => Volatile.Read(ref s_held) > 0;

    /// <summary>For internal helpers that require their caller to hold the GIL.</summary>
    [Conditional("DEBUG")]
    internal static void AssertHeld() => Debug.Assert(IsHeld, "this helper must be called with the GIL held");

    /// <summary>Releases the GIL (or one level of a nested acquisition). Calling it twice is harmless.</summary>
    public void Dispose()
    {
        var kind = _kind;
        if (kind == None)
            return;
        _kind = None;
        if (kind == Nested)
        {
            PerThread.Depth--;
            return;
        }
        // Back to the depth before this token: 0 on the outermost one; the outer token's inside a .NET call from Python (pythonnet
        // took the GIL back on return), so that its later nested scopes stay cheap.
        PerThread.Depth = _outerDepth;
        Interlocked.Decrement(ref s_held);
        if (kind == Restored)
            CPython.PyEval_SaveThread(); // returns this thread's kept state, which stays kept
        else
            CPython.PyGILState_Release(_state);
    }

    // The thread's Python state and nesting depth.
    private static class PerThread
    {
        [ThreadStatic] internal static nint ThreadState; // this thread's kept PyThreadState* (0 until its first acquisition)
        [ThreadStatic] internal static int Depth;        // tokens of this library this thread holds
    }
}
