// Design notes: the one way the library releases Python objects and buffers from code that must not wait
// indefinitely for the GIL: finalizers, and Dispose while another thread may hold the GIL for as long as it likes
// (an in-process call stuck in a C loop after CallAsync timed out).
// - Finalizers never take the GIL. PythonBuffer's finalizer queues its Py_buffer (PythonBuffer.DrainPendingReleases),
//   pythonnet's PyObject finalizer queues its reference (Python.Runtime.Finalizer), Native.OwnedReference's finalizer
//   queues its raw reference (QueueDecRef), objects released by Dispose queue here; the next thread that takes the GIL
//   (outermost Gil.Acquire) drains them all, in Drain (which returns at once, with plain reads, when nothing is queued).
//   pythonnet's queue cannot be inspected and emptying it costs ~1 µs even when empty, so it is emptied only after a
//   .NET GC (the only time its finalizers run): a chain of GcSentinel objects notices each GC, and the drainer then
//   waits for that GC's finalizers and empties the queue (so memory goes even while Python is idle; at most once a
//   second, the next GIL holder does it in between).
// - Release (Dispose paths): with the GIL held on this thread, at once. When no other thread holds a GIL token of
//   this library, the GIL is taken here (the common, fast case: a few hundred ns). Otherwise the release is queued
//   and a dedicated drainer thread takes the GIL; Release waits for it at most WaitLimit, so a Dispose is still
//   synchronous whenever the GIL comes free soon, and returns (the release then happens when the GIL comes free)
//   when the holder keeps it: once the drainer has waited WaitLimit, later Releases do not wait at all.
// - Remaining case: a thread that Python itself started (threading.Thread) holding the GIL in C code that never
//   releases it is invisible here, so a Dispose then waits for it like every other Python operation does.
using System.Collections.Concurrent;
using System.Diagnostics;
using Interop.Buffers;

namespace Interop.Embedding;

/// <summary>Releases that need the GIL, done without waiting indefinitely for it (see the design notes).</summary>
internal static class PendingReleases
{
    /// <summary>How long a Dispose waits for a GIL that another thread holds before leaving the release queued.</summary>
    internal static readonly TimeSpan WaitLimit = TimeSpan.FromMilliseconds(100);

    private static readonly ConcurrentQueue<IDisposable> s_queue = new();
    private static readonly object s_lock = new(); // a Monitor: Release and the drainer wait on it
    private static Thread? s_drainer;
    private static long s_requested; // drain rounds asked for (under s_lock)
    private static long s_completed; // drain rounds done (under s_lock)
    private static long s_gilWaitStarted; // Stopwatch timestamp while the drainer waits for the GIL; 0 when it does not
    [ThreadStatic] private static bool t_draining;

    /// <summary>Releases queued by Dispose that await a GIL holder (for tests and diagnostics).</summary>
    internal static int Queued => s_queue.Count;

    /// <summary>
    /// Disposes <paramref name="first"/> and <paramref name="second"/> (resources whose Dispose needs the GIL) with the GIL
    /// held, waiting for it at most <see cref="WaitLimit"/> when another thread holds it; otherwise they are released
    /// by the next GIL holder. After Python shut down, nothing is released (the process is ending).
    /// </summary>
    public static void Release(IDisposable first, IDisposable? second = null)
    {
        if (!PythonRuntime.IsRunning)
            return;
        if (Gil.IsHeld || !Gil.HeldByAnyThread)
        {
            using var gil = Gil.Acquire();
            ReleaseNow(first);
            if (second is not null)
                ReleaseNow(second);
            return;
        }
        s_queue.Enqueue(first);
        if (second is not null)
            s_queue.Enqueue(second);
        NoteQueued();
        long round;
        lock (s_lock)
        {
            round = ++s_requested;
            EnsureDrainer();
            Monitor.PulseAll(s_lock);
            var started = Stopwatch.GetTimestamp();
            while (s_completed < round)
            {
                var waitingSince = Volatile.Read(ref s_gilWaitStarted);
                var since = waitingSince != 0 ? Math.Min(waitingSince, started) : started;
                var left = WaitLimit - Stopwatch.GetElapsedTime(since);
                if (left <= TimeSpan.Zero)
                    return; // the GIL is held elsewhere for longer: the drainer or the next GIL holder releases them
                Monitor.Wait(s_lock, left);
            }
        }
    }

    /// <summary>Queues <paramref name="resource"/> for the next GIL holder without waiting (for finalizers).</summary>
    public static void Queue(IDisposable resource)
    {
        if (!PythonRuntime.IsRunning)
            return;
        s_queue.Enqueue(resource);
        NoteQueued();
        WakeDrainer();
    }

    /// <summary>Queues the release of a raw reference (Native.OwnedReference's finalizer) for the next GIL holder; never waits.</summary>
    public static void QueueDecRef(nint address)
    {
        if (!PythonRuntime.IsRunning)
            return;
        s_decRefs.Enqueue(address);
        NoteQueued();
        WakeDrainer();
    }

    /// <summary>Asks the drainer (started if needed) for one more round, without waiting for it.</summary>
    private static void WakeDrainer()
    {
        lock (s_lock)
        {
            s_requested++;
            EnsureDrainer();
            Monitor.PulseAll(s_lock);
        }
    }

    private static readonly ConcurrentQueue<nint> s_decRefs = new();

    // 1 after anything was queued here or in PythonBuffer's queue, until a Drain starts emptying them: the check on every
    // outermost GIL acquisition is then one plain read (three ConcurrentQueue.IsEmpty checks cost ~30 ns a time).
    // Written after the enqueue and cleared before the queues are emptied, so an item is never left behind unseen.
    private static int s_queued;

    /// <summary>Says that a release was queued (call it after the enqueue, in this class and in PythonBuffer).</summary>
    internal static void NoteQueued() => Volatile.Write(ref s_queued, 1);

    /// <summary>Releases everything queued: buffers and objects from finalizers and from Dispose. Requires the GIL.</summary>
    public static void Drain()
    {
        // The common case, on every outermost GIL acquisition: nothing queued, no GC seen (plain reads, no locked instructions).
        if (Volatile.Read(ref s_queued) == 0 && Volatile.Read(ref s_gcSeen) == 0)
            return;
        if (t_draining)
            return; // a release that takes the GIL again must not recurse through the queue
        t_draining = true;
        Interlocked.Exchange(ref s_queued, 0);
        try
        {
            if (PythonBuffer.HasPendingReleases)
                PythonBuffer.DrainPendingReleases();
            while (s_queue.TryDequeue(out var resource))
                ReleaseNow(resource);
            while (s_decRefs.TryDequeue(out var address))
                Native.OwnedReference.DecRef(address);
            // PyObjects that nobody disposed: pythonnet's finalizer queued their references after a GC; release them now
            // rather than after pythonnet's next 200 allocations.
            if (Volatile.Read(ref s_gcSeen) != 0 && Interlocked.Exchange(ref s_gcSeen, 0) != 0)
                Python.Runtime.Finalizer.Instance.Collect();
        }
        catch (Exception e)
        {
            Trace.WriteLine($"[interop] a queued Python release failed: {e.Message}");
        }
        finally
        {
            t_draining = false;
        }
    }

    private static void ReleaseNow(IDisposable resource)
    {
        try
        {
            resource.Dispose();
        }
        catch (Exception e)
        {
            Trace.WriteLine($"[interop] releasing a Python object failed: {e.Message}");
        }
    }

    private static int s_gcSeen; // 1 after a .NET GC, until the next Drain empties pythonnet's finalizer queue
    private static int s_sentinelStarted;

    /// <summary>Starts noticing .NET GCs (called once the runtime runs).</summary>
    public static void WatchCollections()
    {
        if (Interlocked.Exchange(ref s_sentinelStarted, 1) == 0)
            _ = new GcSentinel();
    }

    // Finalized at every GC (each is a fresh gen-0 object); it never touches Python.
    private sealed class GcSentinel
    {
        ~GcSentinel()
        {
            if (Environment.HasShutdownStarted || !PythonRuntime.IsRunning)
                return;
            Volatile.Write(ref s_gcSeen, 1);
            _ = new GcSentinel();
            // The drainer's GIL acquisition competes with Python threads: at most one such round a second (between
            // rounds, the next GIL holder empties the queue, as s_gcSeen says).
            var now = Environment.TickCount64;
            if (now - Volatile.Read(ref s_lastCollectRound) < 1000)
                return;
            Volatile.Write(ref s_lastCollectRound, now);
            lock (s_lock)
            {
                s_collectRequested = true;
                s_requested++;
                EnsureDrainer();
                Monitor.PulseAll(s_lock);
            }
        }
    }

    private static long s_lastCollectRound = long.MinValue / 2; // Environment.TickCount64 of the last GC-triggered round
    private static bool s_collectRequested; // under s_lock: the drainer waits for finalizers, then empties pythonnet's queue

    private static void EnsureDrainer()
    {
        if (s_drainer is not null)
            return;
        s_drainer = new Thread(DrainerLoop) { IsBackground = true, Name = "Interop Python releases" };
        s_drainer.Start();
    }

    private static void DrainerLoop()
    {
        while (true)
        {
            long target;
            bool collect;
            lock (s_lock)
            {
                while (s_requested == s_completed)
                    Monitor.Wait(s_lock);
                target = s_requested;
                collect = s_collectRequested;
                s_collectRequested = false;
            }
            if (collect)
            {
                GC.WaitForPendingFinalizers(); // the PyObject finalizers of that GC have queued their references
                Volatile.Write(ref s_gcSeen, 1);
            }
            if (PythonRuntime.IsRunning)
            {
                Volatile.Write(ref s_gilWaitStarted, Stopwatch.GetTimestamp());
                using (Gil.Acquire()) // the outermost acquisition drains
                    Volatile.Write(ref s_gilWaitStarted, 0);
            }
            lock (s_lock)
            {
                s_completed = target;
                Monitor.PulseAll(s_lock);
            }
        }
    }
}
