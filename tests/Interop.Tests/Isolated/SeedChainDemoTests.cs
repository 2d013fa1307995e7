namespace Interop.Tests.Isolated;

/// <summary>The demo's step 5 as users run it: `Interop.Cli demo` starts `seed-chain` in a child process.</summary>
[TestFixture]
[Category("isolated")]
[Category("torch")]
[NonParallelizable]
public class SeedChainDemoTests
{
    [Test]
    public void The_demo_ends_with_the_seed_chain_across_two_processes_()
    {
        var (code, output, timedOut) = TestPython.Run("dotnet", [TestPython.CliDll, "demo"], TimeSpan.FromMinutes(3),
                                                      new Dictionary<string, string> { ["INTEROP_PYTHON"] = TestPython.Executable });
        Assert.Multiple(() =>
        {
            Assert.That(timedOut, Is.False, output);
            Assert.That(code, Is.Zero, output);
            Assert.That(output, Does.Contain("Step 5."));
            Assert.That(output, Does.Contain("torch.from_numpy -> softmax"));
            Assert.That(output, Does.Contain("[0.113044, 0.102286, 0.278043, 0.506627]"), "the worker's first row (softmax of the seed data)");
            // Where TorchSharp runs, both results must agree over shared memory; elsewhere the step says why it skipped.
            Assert.That(output, Does.Contain("they agree").And.Contain("the same memory, no copy")
                                  .Or.Contain("TorchSharp: skipped here"), output);
            Assert.That(output, Does.Not.Contain("THEY DIFFER").And.Not.Contain("COPIED"));
        });
    }
}
