using Interop.Cli;
using Interop.Embedding;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using Interop.Torch;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>
/// Isolated mode with TorchSharp in this process and Python torch in the worker (two libtorch releases, two processes).
/// This process never imports Python torch: the libtorch guard would refuse it, and the tests check it is not mapped.
/// </summary>
[TestFixture]
[Category("torchsharp")]
[Category("isolated")]
[NonParallelizable]
public class IsolatedTorchSharpTests : TorchSharpFixture
{
    private static string Fixture
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "tests", "Interop.Tests", "Isolated", "worker_fixture.py");
                if (File.Exists(candidate))
                    return candidate;
            }
            throw new FileNotFoundException("worker_fixture.py");
        }
    }

    private static WorkerOptions Options => new() { Python = new PythonOptions { PythonExecutable = Environment.GetEnvironmentVariable("INTEROP_PYTHON") } };

    private static string[] ShmLeftovers() => Directory.Exists("/dev/shm") ? Directory.GetFiles("/dev/shm", $"interop-{Environment.ProcessId}-*") : [];

    [TearDown]
    public void PythonTorchNeverJoinedThisProcess()
    {
        var foreign = LibTorchGuard.MappedLibTorchFiles().Where(p => p.Contains("python", StringComparison.OrdinalIgnoreCase) || p.Contains("/torch/lib/", StringComparison.Ordinal));
        Assert.That(foreign, Is.Empty, "Python torch's libtorch must never be mapped into this process");
        Assert.That(ShmLeftovers(), Is.Empty);
    }

    [Test]
    public void The_seed_chain_gives_a_TorchSharp_tensor_over_shared_memory_that_agrees_with_TorchSharp()
    {
        using var output = new StringWriter();
        var facts = SeedChain.Run(output);
        Assert.Multiple(() =>
        {
            Assert.That(facts.WorkerProcessId, Is.Not.EqualTo(Environment.ProcessId));
            Assert.That(LibTorchGuard.SameRelease(facts.WorkerTorchVersion, TorchSharpSupport.LibTorchVersion), Is.False,
                        "here the worker's PyTorch and TorchSharp's libtorch are different releases");
            Assert.That(facts.Shape, Is.EqualTo(new long[] { 4, 4 }));
            Assert.That(facts.TorchSharpViewsSharedMemory, Is.True, output.ToString());
            Assert.That(facts.HostValues, Is.EqualTo(facts.WorkerValues).Within(1e-6f));
            Assert.That(facts.MaxDifference, Is.LessThan(1e-6));
            Assert.That(facts.WorkerValues.Sum(), Is.EqualTo(4f).Within(1e-5f), "softmax rows sum to 1");
        });
    }

    [Test]
    public void Auto_mode_chooses_the_worker_once_TorchSharp_is_loaded()
    {
        Assert.That(SessionModeChooser.Resolve(SessionMode.Auto, Options.Python), Is.EqualTo(SessionMode.Isolated));
        using var session = PythonSession.Create(SessionMode.Auto, Options);
        using var pid = session.Import("os").GetAttr("getpid").Call();
        Assert.That(pid.AsInt64(), Is.Not.EqualTo(Environment.ProcessId));
    }

    [Test]
    public void A_result_of_more_than_2_pow_31_elements_becomes_a_TorchSharp_tensor_over_the_whole_region()
    {
        // 64-bit sizes through WrapMemory: np.zeros(2**31 + 16, np.int8) with 7 first and 1..16 last, read at its far end.
        const long count = (1L << 31) + 16;
        using var session = PythonSession.Isolated(Options);
        using var fixture = session.LoadFile(Fixture);
        using var big = fixture.GetAttr("big_int8").Call(count, false);
        using var t = big.ToTorchSharp();
        Assert.Multiple(() =>
        {
            Assert.That(t.shape, Is.EqualTo(new[] { count }));
            Assert.That(t.numel(), Is.EqualTo(count));
            Assert.That(t.DataAddress(), Is.EqualTo(big.AsTensorData().Address), "over the shared region, no copy");
            Assert.That(t[0].item<sbyte>(), Is.EqualTo(7));
            Assert.That(t[count - 1].item<sbyte>(), Is.EqualTo(16));
            Assert.That(t[count - 16].item<sbyte>(), Is.EqualTo(1));
            Assert.That(t[count - 17].item<sbyte>(), Is.Zero);
        });
    }

    [Test]
    public void A_shared_TorchSharp_tensor_outlives_its_value_and_even_its_crashed_worker()
    {
        using var session = PythonSession.Isolated(Options);
        using var fixture = session.LoadFile(Fixture);
        // Tensors of earlier tests may still be waiting for their finalizers: settle them, and compare with <= below,
        // since one of them may still be collected while this test runs (the counter is process-wide).
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var wrappedBefore = TorchSharpTensors.LiveWrappedMemory;
        torch.Tensor shared;
        using (var value = fixture.GetAttr("scale").Call(new float[] { 1, 2, 3 }))
            shared = value.ToTorchSharp();
        Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("segfault").Call());
        Assert.That(shared.data<float>().ToArray(), Is.EqualTo(new float[] { 2, 4, 6 }), "the mapping stays valid in this process");
        using (var copy = fixture.GetAttr("scale").Call(new float[] { 5 }))
        using (var owned = copy.ToTorchSharp(TorchSharpMemory.Copy))
        {
            Assert.That(owned.DataAddress(), Is.Not.EqualTo(copy.AsTensorData().Address));
            Assert.That(owned.item<float>(), Is.EqualTo(10f));
        }
        shared.Dispose();
        Assert.That(Eventually(() => TorchSharpTensors.LiveWrappedMemory <= wrappedBefore), Is.True, "the region hold is released with the tensor");
    }

    [Test]
    public void Crashes_and_timeouts_in_the_worker_leave_TorchSharp_and_this_process_working()
    {
        using var session = PythonSession.Isolated(Options);
        using var fixture = session.LoadFile(Fixture);
        Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("exit_now").Call(9));
        Assert.Throws<WorkerTimeoutException>(() => fixture.GetAttr("sleep").Call([30.0], new CallOptions { Timeout = TimeSpan.FromSeconds(1) }));
        using var value = fixture.GetAttr("scale").Call(new double[,] { { 1, 2 }, { 3, 4 } });
        using var t = value.ToTorchSharp();
        using var expected = torch.tensor(new double[] { 2, 4, 6, 8 }, [2, 2], torch.float64);
        Assert.That(t.data<double>().ToArray(), Is.EqualTo(expected.data<double>().ToArray()));
        Assert.That(t.shape, Is.EqualTo(new long[] { 2, 2 }));
    }
}
