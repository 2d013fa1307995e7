using Interop.Embedding;
using Interop.Isolated;
using Interop.Sessions;
using Interop.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace Interop.TorchSharp.Tests.Models;

/// <summary>
/// Model weights between Python torch (in an isolated worker: another libtorch release) and TorchSharp in this process,
/// on real models built with a fixed seed (no downloads). Needs TorchSharp (skips where it cannot load, e.g. the
/// Debian 12 host) and, for the torchvision models, Python's torchvision in the worker.
/// </summary>
[TestFixture]
[Category("torchsharp")]
[Category("isolated")]
[NonParallelizable]
public class ModelWeightsTests : TorchSharpFixture
{
    private PythonSession _session = null!;
    private PythonRef _fixture = null!;

    [OneTimeSetUp]
    public void StartWorker()
    {
        _session = PythonSession.Isolated(new WorkerOptions { Python = new PythonOptions { PythonExecutable = Environment.GetEnvironmentVariable("INTEROP_PYTHON") } });
        _fixture = _session.LoadFile(ModelSupport.FixturePath);
    }

    [OneTimeTearDown]
    public void StopWorker()
    {
        _fixture?.Dispose();
        _session?.Dispose();
    }

    [TearDown]
    public void ResetProbe()
    {
        ModelWeights.SharedMemoryProbe = null;
        ModelWeights.SimulateDirectRefusal = false;
    }

    private PythonValue Py(string function, params object?[] args)
    {
        using var fn = _fixture.GetAttr(function);
        return fn.Call(args);
    }

    private void RequireTorchVision()
    {
        using var util = _session.Import("importlib.util");
        using var spec = util.GetAttr("find_spec").Call("torchvision");
        if (spec.IsNone)
            Assert.Ignore("The worker's Python has no torchvision (Debian: python3-torchvision); the torchvision models cannot be built.");
    }

    /// <summary>Runs the Python model on <paramref name="x"/> in eval mode; the output as a TorchSharp tensor.</summary>
    private Tensor RunPython(PythonRef model, Tensor x)
    {
        using var value = Py("run", model, ModelSupport.Argument(x));
        return value.ToTorchSharp(TorchSharpMemory.Copy);
    }

    private static IEnumerable<TestCaseData> TorchVisionModels()
    {
        yield return new TestCaseData("resnet18", (Func<nn.Module<Tensor, Tensor>>)(() => torchvision.models.resnet18())).SetName("resnet18");
        yield return new TestCaseData("mobilenet_v2", (Func<nn.Module<Tensor, Tensor>>)(() => torchvision.models.mobilenet_v2())).SetName("mobilenet_v2");
    }

    [TestCaseSource(nameof(TorchVisionModels))]
    public void A_torchvision_models_weights_in_TorchVision_give_the_same_outputs(string name, Func<nn.Module<Tensor, Tensor>> build)
    {
        RequireTorchVision();
        using var scope = NewDisposeScope();
        using var python = Py("torchvision_model", name, 3);
        using var pyModel = python.AsRef();
        var model = build();
        var result = model.LoadWeightsFrom(pyModel);
        model.eval();
        Assert.That(result.MissingKeys, Is.Empty);
        Assert.That(result.TensorCount, Is.EqualTo(model.state_dict().Count));
        var state = model.state_dict();
        Assert.That(state.Keys.Count(k => k.EndsWith("num_batches_tracked", StringComparison.Ordinal)), Is.GreaterThan(0));
        Assert.That(state.Where(kv => kv.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)).All(kv => kv.Value.item<long>() == 8), Is.True,
                    "BatchNorm's num_batches_tracked comes across");
        manual_seed(11);
        var x = randn(2, 3, 64, 64);
        using var expected = RunPython(pyModel, x);
        Tensor actual;
        using (no_grad())
            actual = model.call(x);
        TensorAssert.Close(actual, expected);
    }

    [Test]
    public void A_TransformerEncoderLayer_models_weights_give_the_same_outputs()
    {
        using var scope = NewDisposeScope();
        using var python = Py("encoder", 5);
        using var pyModel = python.AsRef();
        var model = new EncoderNet();
        model.LoadWeightsFrom(pyModel);
        model.eval();
        manual_seed(12);
        var x = randn(7, 2, 32); // sequence, batch, features
        using var expected = RunPython(pyModel, x);
        using (no_grad())
            TensorAssert.Close(model.call(x), expected);
    }

    [Test]
    public void An_LSTM_models_weights_give_the_same_outputs_both_ways()
    {
        using var scope = NewDisposeScope();
        // Python -> TorchSharp
        using var python = Py("recurrent", 6);
        using var pyModel = python.AsRef();
        var model = new RecurrentNet();
        model.LoadWeightsFrom(pyModel);
        manual_seed(13);
        var x = randn(5, 3, 10);
        using (var expected = RunPython(pyModel, x))
        using (no_grad())
            TensorAssert.Close(model.call(x), expected);

        // TorchSharp -> Python: a TorchSharp model with its own initialisation into a fresh Python model
        manual_seed(99);
        var native = new RecurrentNet();
        using var other = Py("recurrent", 7);
        using var target = other.AsRef();
        var result = native.CopyWeightsTo(target);
        Assert.That(result.TensorCount, Is.EqualTo(native.state_dict().Count));
        using (var expected = RunPython(target, x))
        using (no_grad())
            TensorAssert.Close(native.call(x), expected);
    }

    [Test]
    public void Fine_tuning_in_TorchSharp_then_weights_back_in_Python_give_TorchSharps_outputs()
    {
        RequireTorchVision();
        using var scope = NewDisposeScope();
        using var python = Py("torchvision_model", "resnet18", 4);
        using var pyModel = python.AsRef();
        var model = torchvision.models.resnet18(num_classes: 1000);
        model.LoadWeightsFrom(pyModel);
        using var before = Py("checksum", pyModel);
        model.train();
        var optimizer = optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        manual_seed(21);
        var inputs = randn(4, 3, 64, 64);
        var labels = randint(0, 1000, [4], dtype: int64);
        for (var step = 0; step < 3; step++)
        {
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(inputs), labels);
            loss.backward();
            optimizer.step();
        }
        model.eval();
        model.CopyWeightsTo(pyModel);
        using var after = Py("checksum", pyModel);
        Assert.That(after.AsDouble(), Is.Not.EqualTo(before.AsDouble()), "the Python model changed");
        using var expected = RunPython(pyModel, inputs);
        using (no_grad())
            TensorAssert.Close(model.call(inputs), expected);
        var tracked = model.state_dict().First(kv => kv.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal));
        using var pyTracked = Py("entry", pyModel, tracked.Key);
        Assert.That(pyTracked.ToArray<long>(), Is.EqualTo(new[] { tracked.Value.item<long>() }), "training's BatchNorm counters went back too");
    }

    [Test]
    public void Every_dtype_comes_across_bit_exact_and_bfloat16_stays_bfloat16()
    {
        using var scope = NewDisposeScope();
        using var python = Py("mixed", 1);
        using var pyModel = python.AsRef();
        var state = ModelWeights.ReadStateDict(pyModel);
        var dtypes = state.ToDictionary(kv => kv.Key, kv => kv.Value.dtype);
        Assert.That(dtypes, Is.EqualTo(new Dictionary<string, ScalarType>
        {
            ["f32"] = ScalarType.Float32, ["bf16"] = ScalarType.BFloat16, ["f64"] = ScalarType.Float64, ["f16"] = ScalarType.Float16,
            ["i64"] = ScalarType.Int64, ["flags"] = ScalarType.Bool, ["c64"] = ScalarType.ComplexFloat32, ["c128"] = ScalarType.ComplexFloat64,
            ["scalar"] = ScalarType.Int64,
        }));
        using (var bits = Py("bf16_bits", pyModel))
        using (var ownBits = ModelSupport.Reinterpret(state["bf16"], Interop.DTypes.DType.Int16))
            Assert.That(ownBits.data<short>().ToArray(), Is.EqualTo(bits.ToArray<short>()), "bfloat16 bits, NaN payloads and subnormals included");
        foreach (var name in new[] { "f32", "f64", "f16", "i64", "flags", "c64", "c128", "scalar" })
        {
            using var value = Py("entry", pyModel, name);
            using var expected = value.ToTorchSharp(TorchSharpMemory.Copy);
            Assert.That(ModelSupport.SameBits(state[name], expected), Is.True, name);
        }
        Assert.That(state["scalar"].shape, Is.Empty);

        // TorchSharp -> Python: new bit patterns into another Python model of the same structure
        using (no_grad())
        {
            using var ownBits = ModelSupport.Reinterpret(state["bf16"], Interop.DTypes.DType.Int16);
            ownBits.copy_(arange(12, dtype: int16).reshape(4, 3) * 1001 - 6000);
            state["c64"].mul_(2);
            state["flags"].logical_not_();
        }
        using var other = Py("mixed", 2);
        using var target = other.AsRef();
        ModelWeights.CopyStateDictTo(state, target);
        using (var bits = Py("bf16_bits", target))
        using (var ownBits = ModelSupport.Reinterpret(state["bf16"], Interop.DTypes.DType.Int16))
            Assert.That(bits.ToArray<short>(), Is.EqualTo(ownBits.data<short>().ToArray()));
        foreach (var name in new[] { "f32", "f64", "f16", "i64", "flags", "c64", "c128", "scalar" })
        {
            using var value = Py("entry", target, name);
            using var actual = value.ToTorchSharp(TorchSharpMemory.Copy);
            Assert.That(ModelSupport.SameBits(actual, state[name]), Is.True, name);
        }
        foreach (var t in state.Values)
            t.Dispose();
    }

    [Test]
    public void Read_tensors_lie_over_the_shared_region_and_release_it_when_disposed()
    {
        Settle();
        var before = TorchSharpTensors.LiveWrappedMemory;
        using var python = Py("big_state", 3, 1);
        using var holder = python.AsRef();
        using var source = holder.GetAttr("state");
        var state = ModelWeights.ReadStateDict(source);
        Assert.That(TorchSharpTensors.LiveWrappedMemory - before, Is.EqualTo(3), "no copy: each tensor wraps shared memory");
        Assert.That(state["w2"][^1].item<float>(), Is.EqualTo(2f));
        foreach (var t in state.Values)
            t.Dispose();
        Assert.That(Eventually(() => TorchSharpTensors.LiveWrappedMemory == before), Is.True);
    }

    [Test]
    public void Strict_loads_list_every_problem_and_change_nothing()
    {
        using var scope = NewDisposeScope();
        using var python = Py("recurrent", 6);
        using var pyModel = python.AsRef();
        var model = new OtherNet();
        var snapshot = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var e = Assert.Throws<StateDictMismatchException>(() => model.LoadWeightsFrom(pyModel))!;
        Assert.Multiple(() =>
        {
            Assert.That(e.MissingKeys, Is.EquivalentTo(new[] { "extra.weight", "extra.bias" }));
            Assert.That(e.UnexpectedKeys, Does.Contain("lstm.weight_ih_l1").And.Contain("lstm.bias_hh_l1"));
            Assert.That(e.Mismatches.Select(m => m.Name), Is.EquivalentTo(new[] { "head.weight", "head.bias" }));
            Assert.That(e.Message, Does.Contain("extra.weight").And.Contain("lstm.weight_ih_l1").And.Contain("head.weight: source float32 [4, 20], destination float32 [5, 20]"));
            foreach (var (key, value) in model.state_dict())
                Assert.That(ModelSupport.SameBits(value, snapshot[key]), Is.True, key + " unchanged");
        });
        // Non-strict: missing and unexpected keys are reported, shape mismatches still refused (PyTorch's rule).
        Assert.Throws<StateDictMismatchException>(() => model.LoadWeightsFrom(pyModel, new ModelWeightsOptions { Strict = false }));
    }

    [Test]
    public void Non_strict_loads_copy_the_common_keys_and_report_the_rest()
    {
        using var scope = NewDisposeScope();
        using var python = Py("recurrent", 6);
        using var pyModel = python.AsRef();
        var model = new SingleLayerNet();
        var result = model.LoadWeightsFrom(pyModel, new ModelWeightsOptions { Strict = false });
        Assert.That(result.MissingKeys, Is.Empty);
        Assert.That(result.UnexpectedKeys, Is.EquivalentTo(new[] { "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.bias_ih_l1", "lstm.bias_hh_l1", "head.weight", "head.bias" }));
        using var expected = Py("entry", pyModel, "lstm.weight_hh_l0");
        using var copied = expected.ToTorchSharp(TorchSharpMemory.Copy);
        Assert.That(ModelSupport.SameBits(model.state_dict()["lstm.weight_hh_l0"], copied), Is.True);
    }

    [Test]
    public void A_dtype_mismatch_is_refused_unless_conversion_is_asked_for()
    {
        using var scope = NewDisposeScope();
        using var python = Py("recurrent", 6);
        using var pyModel = python.AsRef();
        var model = new RecurrentNet();
        model.to(float64);
        var e = Assert.Throws<StateDictMismatchException>(() => model.LoadWeightsFrom(pyModel))!;
        Assert.That(e.Mismatches, Has.Count.EqualTo(model.state_dict().Count));
        Assert.That(e.Message, Does.Contain("ConvertDTypes"));
        model.LoadWeightsFrom(pyModel, new ModelWeightsOptions { ConvertDTypes = true });
        Assert.That(model.state_dict()["head.bias"].dtype, Is.EqualTo(ScalarType.Float64));
        // and the other way round
        Assert.Throws<StateDictMismatchException>(() => model.CopyWeightsTo(pyModel));
    }

    [Test]
    public void Batches_are_bounded_and_progress_is_reported()
    {
        var reports = new List<WeightTransferProgress>();
        using var python = Py("big_state", 8, 1);
        using var holder = python.AsRef();
        using var source = holder.GetAttr("state");
        var state = ModelWeights.ReadStateDict(source, new ModelWeightsOptions { BatchBytes = 2 << 20, Progress = new SyncProgress(reports) });
        try
        {
            Assert.That(reports, Has.Count.EqualTo(4), "8 MiB in batches of 2 MiB");
            Assert.That(reports[^1], Is.EqualTo(new WeightTransferProgress(8, 8, 8L << 20, 8L << 20, "w7")));
            Assert.That(reports.Select(r => r.TensorsDone), Is.Ordered);
        }
        finally
        {
            foreach (var t in state.Values)
                t.Dispose();
        }
    }

    [Test]
    public void A_dev_shm_too_small_for_the_largest_tensor_is_a_typed_error_naming_the_size()
    {
        using var python = Py("big_state", 2, 1);
        using var holder = python.AsRef();
        using var source = holder.GetAttr("state");
        ModelWeights.SharedMemoryProbe = () => 1000;
        var e = Assert.Throws<SharedMemoryTooSmallException>(() => ModelWeights.ReadStateDict(source))!;
        Assert.That(e.RequiredBytes, Is.EqualTo(1L << 20));
        Assert.That(e.TensorName, Is.EqualTo("w0"));
        Assert.That(e.Message, Does.Contain("1,048,576").And.Contain("--shm-size"));
        using var scope = NewDisposeScope();
        var module = new RecurrentNet();
        using var python2 = Py("recurrent", 1);
        using var target = python2.AsRef();
        // The direct route (process_vm_readv/writev) needs no shared memory; the shared-region route, its fallback, does.
        Assert.That(module.CopyWeightsTo(target).Route, Is.EqualTo(WeightRoute.DirectCopy));
        Assert.That(module.LoadWeightsFrom(target).Route, Is.EqualTo(WeightRoute.DirectCopy));
        ModelWeights.SimulateDirectRefusal = true;
        Assert.Throws<SharedMemoryTooSmallException>(() => module.CopyWeightsTo(target));
        Assert.Throws<SharedMemoryTooSmallException>(() => module.LoadWeightsFrom(target));
    }

    [Test]
    public void A_checkpoint_written_by_torch_save_loads_into_TorchSharp()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(Path.GetTempPath(), $"interop-models-{Environment.ProcessId}.pt");
        try
        {
            using var python = Py("recurrent", 8);
            using var pyModel = python.AsRef();
            using (Py("save_checkpoint", pyModel, path)) { }
            var model = new RecurrentNet();
            var reports = new List<WeightTransferProgress>();
            model.LoadCheckpoint(_session, path, new ModelWeightsOptions { Progress = new SyncProgress(reports) });
            Assert.That(reports[^1].TensorsDone, Is.EqualTo(model.state_dict().Count));
            manual_seed(3);
            var x = randn(4, 2, 10);
            using var expected = RunPython(pyModel, x);
            using (no_grad())
                TensorAssert.Close(model.call(x), expected);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void The_demo_step_moves_a_torchvision_model_into_TorchSharp_and_the_outputs_agree()
    {
        RequireTorchVision();
        using var output = new StringWriter();
        var facts = Interop.Cli.ModelReuseDemo.Run(output);
        Assert.That(facts.Problem, Is.Null, output.ToString());
        Assert.That(facts.Tensors, Is.EqualTo(122), "resnet18's state dict: parameters and buffers");
        Assert.That(facts.WithinTolerance, Is.True, output.ToString());
        Assert.That(output.ToString(), Does.Contain("Step 6."));
    }

    /// <summary>IProgress that records on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(List<WeightTransferProgress> reports) : IProgress<WeightTransferProgress>
    {
        public void Report(WeightTransferProgress value) => reports.Add(value);
    }
}
