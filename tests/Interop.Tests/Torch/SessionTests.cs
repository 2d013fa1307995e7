using System.Numerics.Tensors;
using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using Interop.Sessions;
using Interop.Torch;

namespace Interop.Tests.Torch;

[TestFixture]
[Category("numpy")]
[Category("torch")]
public class SessionTests
{
    private const string Helpers = """
        import time
        import torch, numpy as np

        kept = torch.arange(6, dtype=torch.float32).reshape(2, 3)

        def echo(*args, **kwargs):
            return (list(args), kwargs)

        def types(*args, **kwargs):
            def name(v):
                t = type(v)
                return t.__name__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__
            return [name(a) for a in args] + [k + "=" + name(v) for k, v in kwargs.items()]

        def describe_tensor(t):
            return [str(t.dtype), list(t.shape), t.flatten().tolist()]

        def same_object(a, b):
            return a is b

        def kept_tensor():
            return kept

        def kept_address():
            return kept.data_ptr()

        def fail():
            raise ValueError("boom from Python")

        def grad_state():
            return {"grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled()}

        def bfloat16():
            return torch.tensor([1.5, 2.5], dtype=torch.bfloat16)

        def needs_grad():
            return torch.ones(2, requires_grad=True) * 3

        def big_int():
            return 2 ** 70

        def an_object():
            return torch.nn.Linear(2, 2)

        def sleep(seconds):
            time.sleep(seconds)
            return seconds

        def busy(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
            return seconds

        def transposed():
            return kept.t()

        def nested_bfloat16():
            return {"a": [torch.ones(1), torch.ones(1, dtype=torch.bfloat16)]}

        def scalars():
            return (None, True, -7, 2.5, "text", np.float32(0.25), b"bytes")
        """;

    private PythonSession _session = null!;
    private ScratchModule _scratch = null!;
    private PythonRef _helpers = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _session = PythonSession.InProcess();
        _scratch = ScratchModule.Load(_session, "session_helpers.py", Helpers);
        _helpers = _scratch.Module;
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _scratch.Dispose();
        _session.Dispose();
    }

    private PythonValue Call(string function, params object?[] args)
    {
        using var f = _helpers.GetAttr(function);
        return f.Call(args);
    }

    private static string[] Strings(PythonValue value) => value.Items.Select(v => v.AsString()).ToArray();

    // ---- the example model ----------------------------------------------------------------------------

    [Test]
    public void Tiny_net_from_dotnet_matches_the_same_model_run_in_python()
    {
        var path = Path.Combine(TestPython.RepositoryRoot, "python", "interop_examples", "tiny_net.py");
        using var session = PythonSession.InProcess();
        using var module = session.LoadFile(path);
        using var build = module.GetAttr("build");
        using var net = build.Call(7);
        var input = new float[,] { { 0.5f, -1, 2, 0 }, { 1, 1, 1, 1 }, { -0.25f, 3, -2, 0.75f } };

        using var output = net.AsRef().Call([input], new CallOptions { GradMode = GradMode.InferenceMode });
        using var reference = module.GetAttr("reference");
        using var expected = reference.Call(input, 7);

        Assert.Multiple(() =>
        {
            Assert.That(output.Kind, Is.EqualTo(PythonValueKind.Tensor));
            Assert.That(output.Shape, Is.EqualTo(new long[] { 3, 3 }));
            Assert.That(output.DType, Is.SameAs(DType.Float32));
            Assert.That(output.ToArray<float>(), Is.EqualTo(expected.ToArray<float>()), "same weights, same input, same process: bit-identical");
            Assert.That(output.ToArray<float>().Distinct().Count(), Is.GreaterThan(1), "a real output, not a constant");
        });

        using var probabilities = net.AsRef().Call([input], new CallOptions { KeywordArguments = new Dictionary<string, object?> { ["probabilities"] = true } });
        var p = probabilities.ToTensor<float>();
        for (var row = 0; row < 3; row++)
            Assert.That(p[row, 0] + p[row, 1] + p[row, 2], Is.EqualTo(1).Within(1e-6), "keyword arguments reach forward()");
    }

    // ---- arguments --------------------------------------------------------------------------------------

    [Test]
    public void Scalars_strings_and_null_arrive_as_Python_types()
    {
        using var result = Call("types", null, true, false, 3, 4L, (byte)5, 1.5, 2.5f, "s", ulong.MaxValue, (Half)0.5);
        Assert.That(Strings(result), Is.EqualTo(new[] { "NoneType", "bool", "bool", "int", "int", "int", "float", "float", "str", "int", "float" }));
        using var echoed = Call("echo", false, ulong.MaxValue);
        Assert.That(echoed[0][0].AsBool(), Is.False, "false stays False (not a truthy wrapper)");
        Assert.That(echoed[0][1].Kind, Is.EqualTo(PythonValueKind.Object), "ints beyond 64 bits stay Python objects");
    }

    [Test]
    public void Arrays_of_any_rank_become_tensors_of_that_shape_and_dtype()
    {
        using var matrix = Call("describe_tensor", new int[,] { { 1, 2, 3 }, { 4, 5, 6 } });
        Assert.That(matrix[0].AsString(), Is.EqualTo("torch.int32"));
        Assert.That(matrix[1].Items.Select(v => v.AsInt64()), Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(matrix[2].Items.Select(v => v.AsInt64()), Is.EqualTo(new long[] { 1, 2, 3, 4, 5, 6 }));

        using var vector = Call("describe_tensor", new double[] { 0.5, 1.5 });
        Assert.That(vector[0].AsString(), Is.EqualTo("torch.float64"));
        using var bools = Call("describe_tensor", new bool[] { true, false });
        Assert.That(bools[0].AsString(), Is.EqualTo("torch.bool"));
    }

    [Test]
    public void Tensor_of_T_and_TensorArgument_over_a_memory_slice_are_passed_with_their_shapes()
    {
        var tensor = Tensor.Create(new float[] { 1, 2, 3, 4, 5, 6 }, [3, 2]);
        using var fromTensor = Call("describe_tensor", tensor);
        Assert.That(fromTensor[1].Items.Select(v => v.AsInt64()), Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(fromTensor[2].Items.Select(v => v.AsDouble()), Is.EqualTo(new double[] { 1, 2, 3, 4, 5, 6 }));

        var backing = new long[] { 9, 10, 11, 12, 13, 14, 15 };
        using var fromMemory = Call("describe_tensor", TensorArgument.Create<long>(backing.AsMemory(1, 6), 2, 3));
        Assert.That(fromMemory[0].AsString(), Is.EqualTo("torch.int64"));
        Assert.That(fromMemory[2].Items.Select(v => v.AsInt64()), Is.EqualTo(new long[] { 10, 11, 12, 13, 14, 15 }));

        using var zeroD = Call("describe_tensor", TensorArgument.Scalar(2.5f));
        Assert.That(zeroD[0].AsString(), Is.EqualTo("torch.float32"));
        Assert.That(zeroD[1].Items, Is.Empty, "a 0-d tensor has shape ()");
        Assert.That(zeroD[2].Items.Select(v => v.AsDouble()), Is.EqualTo(new double[] { 2.5 }));
    }

    [Test]
    public void Array_arguments_are_copied_so_Python_cannot_change_the_callers_memory()
    {
        var data = new float[] { 1, 2, 3 };
        using var session = PythonSession.InProcess();
        var path = Path.Combine(_scratch.Folder, "mutate.py");
        File.WriteAllText(path, "def mutate(t):\n    t[0] = 100\n    return t\n");
        using var module = session.LoadFile(path);
        using var mutate = module.GetAttr("mutate");
        using var result = mutate.Call(data);
        Assert.That(result.ToArray<float>()[0], Is.EqualTo(100));
        Assert.That(data[0], Is.EqualTo(1));
    }

    [Test]
    public void Lists_dictionaries_refs_NDArray_and_TorchTensor_arrive_as_what_they_are()
    {
        using var array = NDArray.Evaluate("np.zeros(2)");
        using var tensor = TorchTensor.Evaluate("torch.zeros(2)");
        using var f = _helpers.GetAttr("echo");
        using var result = Call("types", new object?[] { 1, "a" }, new List<double> { 1.0 }, array, tensor, f,
                                new Dictionary<string, object?> { ["k"] = 1 }, new string[] { "x", "y" });
        Assert.That(Strings(result), Is.EqualTo(new[] { "list", "list", "numpy.ndarray", "torch.Tensor", "function", "dict", "list" }));

        using var same = Call("same_object", f, f);
        Assert.That(same.AsBool(), "a PythonRef passes the object itself");
    }

    [Test]
    public void Keyword_arguments_are_passed()
    {
        using var f = _helpers.GetAttr("types");
        using var result = f.Call([1], new CallOptions { KeywordArguments = new Dictionary<string, object?> { ["x"] = new float[] { 1 }, ["y"] = null } });
        Assert.That(Strings(result), Is.EqualTo(new[] { "int", "x=torch.Tensor", "y=NoneType" }));
    }

    [Test]
    public void Unsupported_arguments_are_a_typed_error_naming_the_type_and_position()
    {
        var e = Assert.Throws<UnsupportedArgumentException>(() => Call("echo", 1, DateTime.UnixEpoch))!;
        Assert.That(e.ArgumentType, Is.EqualTo(typeof(DateTime)));
        Assert.That(e.Message, Does.Contain("argument 1").And.Contain("System.DateTime"));
        var nested = Assert.Throws<UnsupportedArgumentException>(() => Call("echo", (object)new object?[] { 1, new object() }))!;
        Assert.That(nested.Message, Does.Contain("argument 0[1]"));
        Assert.Throws<UnsupportedArgumentException>(() => Call("echo", new decimal[] { 1m }));
    }

    [Test]
    public void A_ref_of_another_session_is_refused()
    {
        using var other = PythonSession.InProcess();
        using var math = other.Import("math");
        var e = Assert.Throws<UnsupportedArgumentException>(() => Call("echo", math))!;
        Assert.That(e.Message, Does.Contain("another session"));
    }

    // ---- results ----------------------------------------------------------------------------------------

    [Test]
    public void Scalars_strings_and_objects_come_back_with_their_kinds()
    {
        using var result = Call("scalars");
        Assert.Multiple(() =>
        {
            Assert.That(result.Kind, Is.EqualTo(PythonValueKind.Sequence));
            Assert.That(result.PythonType, Is.EqualTo("tuple"));
            Assert.That(result[0].IsNone);
            Assert.That(result[1].AsBool());
            Assert.That(result[2].AsInt64(), Is.EqualTo(-7));
            Assert.That(result[3].AsDouble(), Is.EqualTo(2.5));
            Assert.That(result[4].AsString(), Is.EqualTo("text"));
            Assert.That(result[5].AsDouble(), Is.EqualTo(0.25), "NumPy scalars become Python scalars");
            Assert.That(result[6].Kind, Is.EqualTo(PythonValueKind.Bytes), "bytes are read back as bytes (issue 12), alike in both kinds");
            Assert.That(result[6].AsBytes(), Is.EqualTo("bytes"u8.ToArray()));
        });
        var e = Assert.Throws<PythonValueKindException>(() => result[2].AsString())!;
        Assert.That(e.Actual, Is.EqualTo(PythonValueKind.Int));
    }

    [Test]
    public void Mappings_and_objects_are_navigable()
    {
        using var state = Call("grad_state");
        Assert.That(state.Kind, Is.EqualTo(PythonValueKind.Mapping));
        Assert.That(state.Entries.Select(e => e.Key.AsString()), Is.EqualTo(new[] { "grad", "inference" }));
        Assert.Throws<KeyNotFoundException>(() => _ = state["missing"]);

        using var linear = Call("an_object");
        Assert.That(linear.Kind, Is.EqualTo(PythonValueKind.Object));
        Assert.That(linear.AsRef().PythonType, Is.EqualTo("torch.nn.modules.linear.Linear"));
        using var output = linear.AsRef().Call([new float[,] { { 1, 2 } }], new CallOptions { GradMode = GradMode.NoGrad });
        Assert.That(output.Shape, Is.EqualTo(new long[] { 1, 2 }));
    }

    [Test]
    public void A_cpu_tensor_result_is_a_zero_copy_view_of_the_tensors_storage()
    {
        using var address = Call("kept_address");
        using var result = Call("kept_tensor");
        Assert.Multiple(() =>
        {
            Assert.That((long)result.AsTensorData().Address, Is.EqualTo(address.AsInt64()), "same address as the tensor's storage");
            Assert.That(result.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(new float[] { 0, 1, 2, 3, 4, 5 }));
            Assert.That(result.ToMultidimensionalArray<float>(), Is.EqualTo(new float[,] { { 0, 1, 2 }, { 3, 4, 5 } }));
        });
        Assert.Throws<ElementTypeMismatchException>(() => result.AsReadOnlySpan<double>());
        var destination = new float[6];
        result.CopyTo<float>(destination);
        Assert.That(destination[5], Is.EqualTo(5));
    }

    [Test]
    public void A_strided_tensor_result_is_copied_in_C_order_but_refuses_a_flat_span()
    {
        using var result = Call("transposed");
        Assert.That(result.Shape, Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(result.AsTensorData().IsCContiguous, Is.False);
        Assert.That(result.ToArray<float>(), Is.EqualTo(new float[] { 0, 3, 1, 4, 2, 5 }));
        Assert.Throws<LayoutException>(() => result.AsReadOnlySpan<float>());
    }

    [Test]
    public void Tensors_nested_in_results_are_exported_too()
    {
        var path = Path.Combine(TestPython.RepositoryRoot, "python", "interop_examples", "tiny_net.py");
        using var module = _session.LoadFile(path);
        using var describe = module.GetAttr("describe");
        using var result = describe.Call(new double[,] { { 1, 2 }, { 3, 4 } });
        Assert.Multiple(() =>
        {
            Assert.That(result[0].AsDouble(), Is.EqualTo(10));
            Assert.That(result[1].AsInt64(), Is.EqualTo(4));
            Assert.That(result[2]["shape"].Items.Select(v => v.AsInt64()), Is.EqualTo(new long[] { 2, 2 }));
            Assert.That(result[2]["ok"].AsBool());
            Assert.That(result[2]["none"].IsNone);
            Assert.That(result[3].ToArray<double>(), Is.EqualTo(new double[] { 2, 4, 6, 8 }));
        });
        var e = Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => Call("nested_bfloat16").Dispose())!;
        Assert.That(e.Message, Does.Contain("bfloat16"));
    }

    [Test]
    public void Tensor_results_follow_the_export_options()
    {
        Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => Call("bfloat16").Dispose());
        using var f = _helpers.GetAttr("bfloat16");
        using var upcast = f.Call([], new CallOptions { Export = new ExportOptions { Upcast = true } });
        Assert.That(upcast.ToArray<float>(), Is.EqualTo(new float[] { 1.5f, 2.5f }));

        using (var detached = Call("needs_grad"))
            Assert.That(detached.ToArray<float>(), Is.EqualTo(new float[] { 3, 3 }));
        using var g = _helpers.GetAttr("needs_grad");
        Assert.Throws<TensorRequiresGradException>(() => g.Call([], new CallOptions { Export = new ExportOptions { Detach = false } }).Dispose());
    }

    [TestCase(GradMode.Default, true, false)]
    [TestCase(GradMode.NoGrad, false, false)]
    [TestCase(GradMode.InferenceMode, false, true)]
    public void Grad_modes_wrap_the_call(GradMode mode, bool grad, bool inference)
    {
        using var f = _helpers.GetAttr("grad_state");
        using var state = f.Call([], new CallOptions { GradMode = mode });
        Assert.That(state["grad"].AsBool(), Is.EqualTo(grad));
        Assert.That(state["inference"].AsBool(), Is.EqualTo(inference));
    }

    [Test]
    public void Python_exceptions_carry_type_message_and_traceback()
    {
        var e = Assert.Throws<PythonErrorException>(() => Call("fail"))!;
        Assert.Multiple(() =>
        {
            Assert.That(e.PythonType, Is.EqualTo("ValueError"));
            Assert.That(e.PythonMessage, Is.EqualTo("boom from Python"));
            Assert.That(e.PythonTraceback, Does.Contain("session_helpers.py").And.Contain("in fail"));
        });
        Assert.Throws<PythonErrorException>(() => _helpers.GetAttr("no_such_function"));
        Assert.Throws<PythonErrorException>(() => _session.Import("no_such_module_here"));
        Assert.Throws<FileNotFoundException>(() => _session.LoadFile(Path.Combine(_scratch.Folder, "missing.py")));
    }

    [Test]
    public async Task CallAsync_returns_the_result_and_throws_the_isolated_exception_types_at_the_timeout()
    {
        using var sleep = _helpers.GetAttr("sleep");
        using var quick = await sleep.CallAsync([0.01], null);
        Assert.That(quick.AsDouble(), Is.EqualTo(0.01));
        // Issue 12: the same exception types as isolated mode. time.sleep is one native call: the interrupt lands when it
        // returns, so the caller gets its exception at the bound (timeout + grace). The calls last long enough that a loaded
        // machine's late timers cannot let them finish first (sleep(1.0) did, once, under load: no exception).
        Assert.ThrowsAsync<WorkerTimeoutException>(() => sleep.CallAsync([3.0], new CallOptions { Timeout = TimeSpan.FromMilliseconds(50) }));
        // Python bytecode is interrupted at its next boundary: the call itself ends with the cancellation.
        using var busy = _helpers.GetAttr("busy");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        Assert.CatchAsync<OperationCanceledException>(() => busy.CallAsync([20.0], null, cts.Token));
    }

    // ---- lifetimes --------------------------------------------------------------------------------------

    [Test]
    public void Values_refs_and_sessions_refuse_use_after_dispose()
    {
        var value = Call("kept_tensor");
        value.Dispose();
        Assert.Throws<ObjectDisposedException>(() => value.AsReadOnlySpan<float>());
        Assert.Throws<ObjectDisposedException>(() => _ = value.Shape);

        var session = PythonSession.InProcess();
        using var math = session.Import("math");
        using var sqrt = math.GetAttr("sqrt");
        using (var four = sqrt.Call(16.0))
            Assert.That(four.AsDouble(), Is.EqualTo(4));
        session.Dispose();
        Assert.Throws<ObjectDisposedException>(() => sqrt.Call(1.0));
        Assert.Throws<ObjectDisposedException>(() => session.Import("math"));
    }

    [Test]
    public void Tensor_results_release_their_buffers_when_disposed()
    {
        var before = LiveObjects.PythonBuffers;
        for (var i = 0; i < 200; i++)
        {
            using var value = Call("kept_tensor");
            Assert.That(value.AsReadOnlySpan<float>()[5], Is.EqualTo(5));
        }
        using (Call("kept_tensor"))
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before + 1), "a live tensor value holds its buffer");
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
    }
}
