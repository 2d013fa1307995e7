using System.Runtime.CompilerServices;
using Interop.Diagnostics;
using Interop.Embedding;
using Interop.NumPy;

namespace Interop.Tests.Buffers;

/// <summary>Views that are never disposed: their finalizers must not wait for the GIL, and nothing may leak.</summary>
[TestFixture]
[Category("numpy")]
public class FinalizerTests
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AbandonViews(NDArray array, int count)
    {
        for (var i = 0; i < count; i++)
            _ = array.ViewReadOnly<double>();
    }

    [Test]
    public void Finalizers_of_undisposed_views_run_while_this_thread_holds_the_GIL_and_the_buffers_are_released_later()
    {
        using var array = NDArray.Evaluate("np.linspace(0, 1, 1000)");
        var baseline = LiveObjects.PythonBuffers;
        // No GC while the views are made: one in the middle would finalize the first ones, and the loop's own GIL
        // acquisitions would release them (the design), leaving fewer than 50 alive here (seen once in CI: 35).
        var noGc = GC.TryStartNoGCRegion(1 << 20);
        try
        {
            AbandonViews(array, 50);
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(baseline + 50));
        }
        finally
        {
            if (noGc && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion)
                GC.EndNoGCRegion();
        }
        var finished = Task.Run(() =>
        {
            // Holding the GIL while waiting for finalizers would deadlock if a finalizer took the GIL.
            using var gil = PythonRuntime.AcquireGil();
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }).Wait(TimeSpan.FromSeconds(30));
        Assert.That(finished, Is.True, "waiting for finalizers while holding the GIL deadlocked");
        // The next GIL holder releases what the finalizers queued.
        using (PythonRuntime.AcquireGil()) { }
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(baseline));
    }
}
