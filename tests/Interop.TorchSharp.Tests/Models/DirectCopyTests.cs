using System.Diagnostics;
using Interop.Embedding;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Interop.TorchSharp.Tests.Models;

/// <summary>
/// The one-copy route of LoadWeightsFrom in isolated sessions (this process reads the worker's tensors with
/// process_vm_readv) against the shared-region route it falls back to, and what a dying or lying worker does to it.
/// </summary>
[TestFixture]
[Category("torchsharp")]
[Category("isolated")]
[NonParallelizable]
public class DirectCopyTests : TorchSharpFixture
{
    private static readonly string[] MixedNames = ["f32", "f64", "f16", "bf16", "i64", "flags", "c64", "c128", "scalar"];
    private PythonSession _session = null!;
    private PythonRef _fixture = null!;

    [OneTimeSetUp]
    public void StartWorker()
    {
        _session = NewSession();
        _fixture = _session.LoadFile(ModelSupport.FixturePath);
    }

    [OneTimeTearDown]
    public void StopWorker()
    {
        _fixture?.Dispose();
        _session?.Dispose();
    }

    [TearDown]
    public void Reset()
    {
        ModelWeights.SimulateDirectRefusal = false;
        ModelWeights.BeforeDirectCopy = null;
        using (Py(_fixture, "restore_pins")) { }
    }

    private static PythonSession NewSession() =>
        PythonSession.Isolated(new WorkerOptions { Python = new PythonOptions { PythonExecutable = Environment.GetEnvironmentVariable("INTEROP_PYTHON") } });

    private static PythonValue Py(PythonRef fixture, string function, params object?[] args)
    {
        using var fn = fixture.GetAttr(function);
        return fn.Call(args);
    }

    /// <summary>Python's entry (bfloat16 as its int16 bits) against TorchSharp's tensor, bit for bit.</summary>
    private void AssertSameBits(PythonRef pyModel, nn.Module module, string route)
    {
        var state = module.state_dict();
        foreach (var name in MixedNames)
        {
            using var value = Py(_fixture, "entry", pyModel, name);
            using var expected = value.ToTorchSharp(TorchSharpMemory.Copy);
            if (name == "bf16")
            {
                Assert.That(state[name].dtype, Is.EqualTo(ScalarType.BFloat16), "bfloat16 stays bfloat16");
                using var bits = ModelSupport.Reinterpret(state[name], Interop.DTypes.DType.Int16);
                Assert.That(ModelSupport.SameBits(bits, expected), Is.True, $"{route}: bfloat16 bits, NaN payloads and subnormals included");
            }
            else
                Assert.That(ModelSupport.SameBits(state[name], expected), Is.True, $"{route}: {name}");
        }
    }

    [Test]
    public void Every_dtype_loads_bit_exact_by_direct_read_and_the_fallback_gives_the_same_bits()
    {
        using var scope = NewDisposeScope();
        using var python = Py(_fixture, "mixed", 1);
        using var pyModel = python.AsRef();

        var direct = new MixedNet();
        var result = direct.LoadWeightsFrom(pyModel);
        Assert.That(result.Route, Is.EqualTo(WeightRoute.DirectCopy), "a child worker is readable here (Yama ptrace_scope 0 or 1)");
        Assert.That(result.TensorCount, Is.EqualTo(MixedNames.Length));
        AssertSameBits(pyModel, direct, "direct read");

        ModelWeights.SimulateDirectRefusal = true; // as if ptrace_scope 2/3 or seccomp refused process_vm_readv
        var fallback = new MixedNet();
        var fallbackResult = fallback.LoadWeightsFrom(pyModel);
        Assert.That(fallbackResult.Route, Is.EqualTo(WeightRoute.SharedRegion), "refused: the shared-region route, automatically");
        AssertSameBits(pyModel, fallback, "fallback");
        foreach (var name in MixedNames)
            Assert.That(ModelSupport.SameBits(direct.state_dict()[name], fallback.state_dict()[name]), Is.True, $"both routes: {name}");
    }

    [Test]
    public void Non_contiguous_sources_and_converted_dtypes_load_by_direct_read()
    {
        using var scope = NewDisposeScope();
        // A transposed view in the source: the worker pins a contiguous copy (C order), read as such.
        using var t = Py(_fixture, "transposed_state", 5, 7);
        using var source = t.AsRef();
        using var holder = source.GetAttr("state");
        var module = new TransposedNet();
        var result = module.LoadWeightsFrom(holder);
        Assert.That(result.Route, Is.EqualTo(WeightRoute.DirectCopy));
        using var expected = arange(35, dtype: float32).reshape(5, 7).t();
        Assert.That(ModelSupport.SameBits(module.state_dict()["w"], expected), Is.True);
        // float64 destination, float32 source: read into one temporary, then copy_ converts
        var wide = new TransposedNet(float64);
        Assert.That(wide.LoadWeightsFrom(holder, new ModelWeightsOptions { ConvertDTypes = true }).Route, Is.EqualTo(WeightRoute.DirectCopy));
        using var wideExpected = expected.to(float64);
        Assert.That(ModelSupport.SameBits(wide.state_dict()["w"], wideExpected), Is.True);
    }

    [TestCase(false, TestName = "A_worker_that_dies_mid_load_gives_WorkerCrashedException_and_the_session_recovers")]
    [TestCase(true, TestName = "A_worker_that_dies_mid_copy_to_Python_gives_WorkerCrashedException_and_the_session_recovers")]
    public void A_worker_that_dies_mid_transfer_gives_WorkerCrashedException_and_the_session_recovers(bool toPython)
    {
        using var session = NewSession();
        using var fixture = session.LoadFile(ModelSupport.FixturePath);
        using var python = Py(fixture, "big_state", 4, 1);
        using var holder = python.AsRef();
        using var state = holder.GetAttr("state");
        var module = new BigNet(4, 1);
        var copies = 0;
        ModelWeights.BeforeDirectCopy = (pid, name) =>
        {
            if (++copies == 3) // two entries are across, the third is being copied
            {
                using var worker = Process.GetProcessById(pid);
                worker.Kill();
                worker.WaitForExit(10_000);
            }
        };
        var options = new ModelWeightsOptions { BatchBytes = 1 << 20 };
        var transfer = Task.Run(() => toPython ? module.CopyWeightsTo(state, options) : module.LoadWeightsFrom(state, options));
        Assert.That(Task.WhenAny(transfer, Task.Delay(TimeSpan.FromSeconds(60))).Result, Is.SameAs(transfer), "no hang");
        var e = Assert.Throws<AggregateException>(() => transfer.Wait())!;
        Assert.That(e.InnerException, Is.TypeOf<WorkerCrashedException>(), e.ToString());
        Assert.That(copies, Is.EqualTo(3));
        ModelWeights.BeforeDirectCopy = null;

        // The gate was released: a fresh worker takes new calls, and a new state dict goes across.
        using var again = Py(fixture, "big_state", 4, 1);
        using var holder2 = again.AsRef();
        using var state2 = holder2.GetAttr("state");
        Assert.That(module.LoadWeightsFrom(state2).Route, Is.EqualTo(WeightRoute.DirectCopy));
        Assert.That(module.state_dict()["w3"][^1].item<float>(), Is.EqualTo(3f));
        Assert.That(module.CopyWeightsTo(state2).Route, Is.EqualTo(WeightRoute.DirectCopy));
    }

    private static IEnumerable<TestCaseData> Lies()
    {
        foreach (var toPython in new[] { false, true })
        {
            var direction = toPython ? "to_Python" : "from_Python";
            yield return new TestCaseData("unmapped", typeof(WorkerMemoryException), toPython).SetName($"An_address_the_worker_does_not_map_is_a_WorkerMemoryException_{direction}");
            yield return new TestCaseData("short", typeof(WorkerMemoryException), toPython).SetName($"A_range_that_runs_out_of_mapped_memory_is_a_WorkerMemoryException_{direction}");
            yield return new TestCaseData("negative", typeof(WorkerProtocolException), toPython).SetName($"An_impossible_address_is_a_WorkerProtocolException_{direction}");
            yield return new TestCaseData("size", typeof(WorkerProtocolException), toPython).SetName($"A_size_other_than_shape_times_dtype_is_a_WorkerProtocolException_{direction}");
        }
        yield return new TestCaseData("readonly", typeof(WorkerMemoryException), true).SetName("Read_only_memory_is_a_WorkerMemoryException_to_Python");
    }

    [Test]
    public void A_lying_pin_batch_for_a_non_contiguous_source_is_a_WorkerMemoryException()
    {
        using var t = Py(_fixture, "transposed_state", 5, 7);
        using var holder = t.AsRef();
        using var source = holder.GetAttr("state"); // not contiguous: pinned by pin_batch, not placed by open_described
        var module = new TransposedNet();
        using (Py(_fixture, "hostile_pins", "unmapped", "pin_batch")) { }
        var e = Assert.Throws<WorkerMemoryException>(() => module.LoadWeightsFrom(source))!;
        Assert.That(e.Message, Does.Contain("'w'"));
        using (Py(_fixture, "restore_pins")) { }
        Assert.That(module.LoadWeightsFrom(source).Route, Is.EqualTo(WeightRoute.DirectCopy));
    }

    [Test]
    public void A_lying_pin_targets_for_a_non_contiguous_target_is_a_WorkerMemoryException()
    {
        using var t = Py(_fixture, "transposed_state", 5, 7);
        using var holder = t.AsRef();
        using var target = holder.GetAttr("state"); // not contiguous: staged by pin_targets, not placed by open_target_described
        var module = new TransposedNet();
        using (Py(_fixture, "hostile_pins", "unmapped", "pin_targets")) { }
        var e = Assert.Throws<WorkerMemoryException>(() => module.CopyWeightsTo(target))!;
        Assert.That(e.Message, Does.Contain("'w'"));
        using (Py(_fixture, "restore_pins")) { }
        Assert.That(module.CopyWeightsTo(target).Route, Is.EqualTo(WeightRoute.DirectCopy));
    }

    [TestCaseSource(nameof(Lies))]
    public void A_worker_that_lies_about_its_memory_gets_a_typed_exception(string lie, Type expected, bool toPython)
    {
        using var python = Py(_fixture, "big_state", 2, 1);
        using var holder = python.AsRef();
        using var state = holder.GetAttr("state");
        using var scope = NewDisposeScope();
        var module = new BigNet(2, 1);
        using (no_grad())
            module.state_dict()["w1"].fill_(5f);
        using (Py(_fixture, "hostile_pins", lie, toPython ? "open_target_described" : "open_described")) { }
        var e = Assert.Catch(() => _ = toPython ? module.CopyWeightsTo(state) : module.LoadWeightsFrom(state))!;
        Assert.That(e, Is.TypeOf(expected), e.ToString());
        Assert.That(e.Message, Does.Contain("w0"));
        if (e is WorkerMemoryException memory)
        {
            Assert.That(memory.Length, Is.EqualTo(1L << 20));
            Assert.That(memory.FailedAt, Is.EqualTo(lie == "short" ? 1L << 19 : 0));
            Assert.That(memory.ErrorNumber, Is.EqualTo(14), "EFAULT");
        }
        // The worker lives on and the gate was released: an honest transfer goes through.
        using (Py(_fixture, "restore_pins")) { }
        if (toPython)
        {
            Assert.That(module.CopyWeightsTo(state).Route, Is.EqualTo(WeightRoute.DirectCopy));
            using var w1 = Py(_fixture, "value_of", state, "w1");
            Assert.That(w1.ToArray<float>()[0], Is.EqualTo(5f));
        }
        else
        {
            Assert.That(module.LoadWeightsFrom(state).Route, Is.EqualTo(WeightRoute.DirectCopy));
            Assert.That(module.state_dict()["w1"][0].item<float>(), Is.EqualTo(1f));
        }
    }

    [Test]
    public void Every_dtype_goes_to_Python_bit_exact_by_direct_write_and_the_fallback_gives_the_same_bits()
    {
        using var scope = NewDisposeScope();
        using var python = Py(_fixture, "mixed", 1);
        using var pyModel = python.AsRef();
        var module = new MixedNet();
        module.LoadWeightsFrom(pyModel);
        // new bit patterns on this side, then into two other Python models, one per route
        var state = module.state_dict();
        using (no_grad())
        {
            using var bits = ModelSupport.Reinterpret(state["bf16"], Interop.DTypes.DType.Int16);
            bits.copy_(arange(12, dtype: int16).reshape(4, 3) * 1001 - 6000);
            state["c64"].mul_(2);
            state["c128"].mul_(-3);
            state["flags"].logical_not_();
            state["f16"].neg_();
            state["i64"].add_(1);
            state["scalar"].fill_(-9L);
        }
        using var directValue = Py(_fixture, "mixed", 2);
        using var direct = directValue.AsRef();
        Assert.That(module.CopyWeightsTo(direct).Route, Is.EqualTo(WeightRoute.DirectCopy));
        AssertSameBits(direct, module, "direct write");

        ModelWeights.SimulateDirectRefusal = true;
        using var fallbackValue = Py(_fixture, "mixed", 3);
        using var fallback = fallbackValue.AsRef();
        Assert.That(module.CopyWeightsTo(fallback).Route, Is.EqualTo(WeightRoute.SharedRegion));
        AssertSameBits(fallback, module, "fallback");
    }

    [Test]
    public void Non_contiguous_and_converted_Python_targets_are_written_through_staging()
    {
        using var scope = NewDisposeScope();
        using var t = Py(_fixture, "transposed_state", 5, 7);
        using var holder = t.AsRef();
        using var target = holder.GetAttr("state"); // 'w' is a transposed (non-contiguous) float32 view
        var module = new TransposedNet();
        using (no_grad())
            module.state_dict()["w"].copy_(arange(35, dtype: float32).reshape(7, 5) * 3);
        Assert.That(module.CopyWeightsTo(target).Route, Is.EqualTo(WeightRoute.DirectCopy));
        using (var w = Py(_fixture, "value_of", target, "w"))
            Assert.That(w.ToArray<float>(), Is.EqualTo(Enumerable.Range(0, 35).Select(i => i * 3f).ToArray()));
        var wide = new TransposedNet(float64);
        using (no_grad())
            wide.state_dict()["w"].copy_(arange(35, dtype: float64).reshape(7, 5) + 0.5);
        Assert.That(wide.CopyWeightsTo(target, new ModelWeightsOptions { ConvertDTypes = true }).Route, Is.EqualTo(WeightRoute.DirectCopy));
        using (var w = Py(_fixture, "value_of", target, "w"))
            Assert.That(w.ToArray<float>(), Is.EqualTo(Enumerable.Range(0, 35).Select(i => i + 0.5f).ToArray()));
    }

    // Tied weights: several entries of one side are the same memory. PyTorch's rule (copy_ entry after entry) is that the
    // last entry written wins; the direct route copies large batches with several threads, which must not let an earlier
    // entry's piece land after a later one's. An 8 MiB entry first (so the batch is copied in parallel: two pieces of
    // 4 MiB), then 66 entries of 64 KiB that are one tensor: a piece of the first 64 of them (4 MiB), and a short piece of
    // the last two, which another thread finishes long before the long one when both run at once.
    private const int TiedCount = 66, TiedElements = 16 << 10, BigElements = 2 << 20;

    [Test]
    public void Entries_that_share_the_targets_memory_end_with_the_last_entrys_values_by_direct_write()
    {
        using var scope = NewDisposeScope();
        using var python = Py(_fixture, "aliased_state", TiedCount, TiedElements, BigElements);
        using var holder = python.AsRef();
        using var target = holder.GetAttr("state");
        var state = new Dictionary<string, Tensor> { ["big"] = full(BigElements, -1f) };
        for (var i = 0; i < TiedCount; i++)
            state.Add($"t{i}", full(TiedElements, (float)i));
        var expected = Enumerable.Repeat((float)(TiedCount - 1), TiedElements).ToArray();
        for (var attempt = 0; attempt < 4; attempt++)
        {
            Assert.That(ModelWeights.CopyStateDictTo(state, target).Route, Is.EqualTo(WeightRoute.DirectCopy));
            using var shared = Py(_fixture, "value_of", target, "t0");
            Assert.That(shared.ToArray<float>(), Is.EqualTo(expected), $"attempt {attempt}: the last entry wins, as with copy_ in order");
        }
        ModelWeights.SimulateDirectRefusal = true;
        Assert.That(ModelWeights.CopyStateDictTo(state, target).Route, Is.EqualTo(WeightRoute.SharedRegion));
        using (var shared = Py(_fixture, "value_of", target, "t0"))
            Assert.That(shared.ToArray<float>(), Is.EqualTo(expected), "the shared-region route agrees");
    }

    [Test]
    public void Entries_that_share_the_destinations_memory_end_with_the_last_entrys_values_by_direct_read()
    {
        using var scope = NewDisposeScope();
        using var python = Py(_fixture, "distinct_state", TiedCount, TiedElements, BigElements);
        using var holder = python.AsRef();
        using var source = holder.GetAttr("state");
        var module = new TiedNet(TiedCount, TiedElements, BigElements);
        Assert.That(module.state_dict(), Has.Count.EqualTo(TiedCount + 1), "one view of the shared storage under each name");
        var expected = Enumerable.Repeat((float)(TiedCount - 1), TiedElements).ToArray();
        for (var attempt = 0; attempt < 4; attempt++)
        {
            using (no_grad())
                module.state_dict()["t0"].zero_();
            Assert.That(module.LoadWeightsFrom(source).Route, Is.EqualTo(WeightRoute.DirectCopy));
            Assert.That(module.state_dict()["t0"].data<float>().ToArray(), Is.EqualTo(expected), $"attempt {attempt}: the last entry wins, as with copy_ in order");
        }
        ModelWeights.SimulateDirectRefusal = true;
        using (no_grad())
            module.state_dict()["t0"].zero_();
        Assert.That(module.LoadWeightsFrom(source).Route, Is.EqualTo(WeightRoute.SharedRegion));
        Assert.That(module.state_dict()["t0"].data<float>().ToArray(), Is.EqualTo(expected), "the shared-region route agrees");
    }

    /// <summary>
    /// A buffer big, then buffers t0.. that are views of one storage of <c>elements</c> float32 zeros (TorchSharp lists a
    /// parameter registered under several names once, so the aliases here are views).
    /// </summary>
    private sealed class TiedNet : nn.Module
    {
        public TiedNet(int count, int elements, int big) : base(nameof(TiedNet))
        {
            register_buffer("big", zeros(big));
            var shared = zeros(elements);
            for (var i = 0; i < count; i++)
                register_buffer($"t{i}", shared.view(elements));
        }
    }

    [TestCase(1 << 20)] // 4 MiB: the freed memory is unmapped (EFAULT, blamed on the worker)
    [TestCase(1000)] // 4 KB: the freed memory stays in the worker's heap (its old values, read silently)
    public void A_source_reached_by_path_and_changed_before_the_worker_is_held_is_read_as_it_is_under_the_hold(int elements)
    {
        // A reference by attribute path is bound to no worker, so the transfer can hold the worker only once
        // open_described has answered. Another caller's request may run in between: here it gives the parameter new
        // memory (param.data = ...), which frees the memory open_described described. The copy must read what the
        // parameter holds under the hold, not the freed memory.
        using (Py(_fixture, "make_swappable", elements)) { }
        using var source = _fixture.GetAttr("SWAPPABLE");
        var swapped = 0;
        var module = new SwapWhileDescribedNet(elements, () =>
        {
            // Runs while LoadWeightsFrom waits for the worker's description (this side describes its module meanwhile):
            // once open_described has returned, another caller's request changes the module.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (true)
            {
                using var count = Py(_fixture, "described_count");
                if (count.AsInt64() > 0 || DateTime.UtcNow > deadline)
                    break;
                Thread.Sleep(1);
            }
            using (Py(_fixture, "swap_weights", 2.0)) { }
            swapped++;
        });
        var result = module.LoadWeightsFrom(source);
        Assert.That(swapped, Is.EqualTo(1), "the module was changed between the description and the hold");
        Assert.That(result.Route, Is.EqualTo(WeightRoute.DirectCopy));
        var values = module.state_dict()["w"].data<float>().ToArray();
        Assert.That(values.Count(v => v != 2f), Is.Zero, $"the parameter's values under the hold, not its freed memory (first value {values[0]})");
    }

    /// <summary>One parameter w of <c>elements</c> float32 zeros; the first state_dict() also runs <c>during</c>.</summary>
    private sealed class SwapWhileDescribedNet : nn.Module
    {
        private Action? _during;

        public SwapWhileDescribedNet(int elements, Action during) : base(nameof(SwapWhileDescribedNet))
        {
            _during = during;
            register_parameter("w", new Parameter(zeros(elements)));
        }

        public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        {
            Interlocked.Exchange(ref _during, null)?.Invoke();
            return base.state_dict(destination, prefix);
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void A_session_disposed_by_another_thread_during_a_direct_transfer_ends_it_with_a_typed_exception(bool toPython)
    {
        // The transfer holds the worker; Dispose on another thread must neither hang nor let the transfer copy from or to
        // a worker that is gone without saying so: either it finished (every byte right) or it ends with a typed exception.
        var session = NewSession();
        try
        {
            using var fixture = session.LoadFile(ModelSupport.FixturePath);
            using var python = Py(fixture, "big_state", 4, 4);
            using var holder = python.AsRef();
            using var state = holder.GetAttr("state");
            using var scope = NewDisposeScope();
            var module = new BigNet(4, 4);
            Task? disposing = null;
            ModelWeights.BeforeDirectCopy = (_, name) =>
            {
                if (name != "w2" || disposing is not null)
                    return;
                disposing = Task.Run(session.Dispose);
                disposing.Wait(TimeSpan.FromMilliseconds(500)); // Dispose may wait for the hold: go on after a while
            };
            Exception? e = null;
            try
            {
                _ = toPython ? module.CopyWeightsTo(state) : module.LoadWeightsFrom(state);
            }
            catch (Exception caught)
            {
                e = caught;
            }
            Assert.That(disposing, Is.Not.Null);
            Assert.That(disposing!.Wait(TimeSpan.FromSeconds(30)), Is.True, "Dispose returned");
            if (e is null && !toPython)
            {
                // Finished before the worker went (Dispose gives it a grace period): then every byte is the worker's.
                for (var i = 0; i < 4; i++)
                    Assert.That(module.state_dict()[$"w{i}"].data<float>().ToArray(), Has.All.EqualTo((float)i), $"w{i}");
            }
            else if (e is not null)
                Assert.That(e, Is.InstanceOf<WorkerCrashedException>().Or.InstanceOf<ObjectDisposedException>(), e.ToString());
        }
        finally
        {
            ModelWeights.BeforeDirectCopy = null;
            session.Dispose();
        }
    }

    /// <summary>TorchSharp twin of model_fixture.Mixed: one parameter or buffer per dtype, zeros.</summary>
    private sealed class MixedNet : nn.Module
    {
        public MixedNet() : base(nameof(MixedNet))
        {
            register_parameter("f32", new Parameter(zeros([4, 3], float32)));
            register_buffer("f64", zeros([4, 3], float64));
            register_buffer("f16", zeros([4, 3], float16));
            register_parameter("bf16", new Parameter(zeros([4, 3], bfloat16)));
            register_buffer("i64", zeros([4, 3], int64));
            register_buffer("flags", zeros([4, 3], @bool));
            register_buffer("c64", zeros([4, 3], complex64));
            register_buffer("c128", zeros([4, 3], complex128));
            register_buffer("scalar", tensor(0L));
        }
    }

    /// <summary>One parameter w of shape [7, 5].</summary>
    private sealed class TransposedNet : nn.Module
    {
        public TransposedNet(ScalarType? dtype = null) : base(nameof(TransposedNet)) =>
            register_parameter("w", new Parameter(zeros([7, 5], dtype ?? float32)));
    }

    /// <summary>Parameters w0.. of <c>mib</c> MiB float32 each (model_fixture.big_state's twin).</summary>
    private sealed class BigNet : nn.Module
    {
        public BigNet(int count, int mib) : base(nameof(BigNet))
        {
            for (var i = 0; i < count; i++)
                register_parameter($"w{i}", new Parameter(zeros((long)mib << 18)));
        }
    }
}
