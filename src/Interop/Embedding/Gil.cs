// Design notes: the GIL as a scoped token.
// - Gil is a ref struct: it cannot be stored on the heap or held across an await, so a GIL taken on one
//   thread is always released on that same thread (PyGILState_* are per-thread).
// - The first acquisition on a thread creates a Python thread state for it and keeps it (one
//   PyGILState_Ensure that is never released, followed by PyEval_SaveThread). Later acquisitions then only
//   swap the GIL in and out (~0.2 µs instead of ~2.5 µs for creating and destroying a thread state).
// - Reentrant: nested acquisitions on one thread are counted by CPython.
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
    [ThreadStatic] private static bool t_threadStateKept;
    private static int s_held;
    private int _state;
    private bool _held;

    internal static Gil Acquire()
    {
        var outermost = CPython.PyGILState_Check() == 0;
        if (!t_threadStateKept && outermost)
        {
            // Safety: the thread does not hold the GIL, so Ensure takes it and SaveThread gives it back,
            // leaving this thread's state registered (its counter stays at 1) for the rest of the thread's life.
            CPython.PyGILState_Ensure();
            CPython.PyEval_SaveThread();
            t_threadStateKept = true;
        }
        var gil = new Gil { _state = CPython.PyGILState_Ensure(), _held = true };
        Interlocked.Increment(ref s_held);
        if (outermost)
            PendingReleases.Drain(); // cheap when nothing is queued
        return gil;
    }

    /// <summary>True when the calling thread holds the GIL.</summary>
    public static bool IsHeld => CPython.IsLoaded && PythonRuntime.IsRunning && CPython.PyGILState_Check() != 0;

    /// <summary>True while any thread holds a GIL token of this library (for PendingReleases).</summary>
    internal static bool HeldByAnyThread => Volatile.Read(ref s_held) > 0;

    /// <summary>For internal helpers that require their caller to hold the GIL.</summary>
    [Conditional("DEBUG")]
    internal static void AssertHeld() => Debug.Assert(IsHeld, "this helper must be called with the GIL held");

    /// <summary>Releases the GIL (or one level of a nested acquisition). Calling it twice is harmless.</summary>
    public void Dispose()
    {
        if (!_held)
            return;
        _held = false;
        Interlocked.Decrement(ref s_held);
        CPython.PyGILState_Release(_state);
    }
}
