namespace Interop.TorchSharp.Tests;

/// <summary>Base of fixtures that need TorchSharp's native library: they skip, saying why, where it cannot load.</summary>
public abstract class TorchSharpFixture
{
    [OneTimeSetUp]
    public void RequireTorchSharp()
    {
        // Outside the code's control: TorchSharp's native library needs a newer libstdc++ than some hosts have.
        if (!TorchSharpSupport.IsAvailable)
            Assert.Ignore("TorchSharp cannot run in this environment: " + TorchSharpSupport.Problem);
    }

    /// <summary>Lets garbage from earlier tests be collected and released, so leak counters start from a settled value.</summary>
    protected static void Settle() => Eventually(() => false);

    /// <summary>Collects garbage until <paramref name="done"/> holds (finalizers and queued releases included), at most ~0.5 s plus collection time.</summary>
    protected static bool Eventually(Func<bool> done)
    {
        for (var i = 0; i < 25 && !done(); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            using (Interop.Embedding.PythonRuntime.AcquireGil())
            {
                // taking the GIL drains buffers queued by deleters on other threads
            }
            Thread.Sleep(20);
        }
        return done();
    }
}
