using System.Runtime.CompilerServices;
using Interop.Diagnostics;
using Interop.Embedding;
using Interop.Errors;
using Interop.NumPy;
using Interop.Sessions;
using Interop.Torch;
using static Interop.Tests.Torch.TorchTestPython;

namespace Interop.Tests.Torch;

/// <summary>
/// The direct call path (Native/DirectCall, OwnedReference): TorchTensor's conversions and the in-process session's calls
/// go straight through CPython's vectorcall and keep raw references. Same results and typed errors as before; every
/// reference is released at Dispose (Python sees it at once), and nothing accumulates over many calls.
/// </summary>
[TestFixture]
[Category("numpy")]
[Category("torch")]
public class DirectCallPathTests
{
    private const string Helpers = """
        import sys, enum
        import numpy as np

        A = None

        def make_a():
            global A
            A = np.arange(16, dtype=np.float32)

        def resize_a():
            A.resize(32)  # refcheck: refused while anything else refers to A (a tensor, an exported array, a buffer)
            return A.shape[0]

        class Box:
            pass

        def box():
            return Box()

        class Colour(enum.IntEnum):
            RED = 3

        class Renamed:
            pass

        class Ratio(float):
            pass

        def identity(x):
            return x

        def noop():
            pass

        def refcount(x):
            return sys.getrefcount(x)

        def fail(x):
            raise KeyError("no such key: %r" % (x,))

        def colour():
            return Colour.RED

        def ratio():
            return Ratio(0.5)

        def renamed():
            return Renamed()

        def rename(name):
            Renamed.__qualname__ = name

        def describe(r):
            return f"{r.dtype} {list(r.shape)} {r.tolist()}"

        def describe_values(r):
            values = r.reshape(-1).tolist()
            return f"{r.dtype} {list(r.shape)}|" + ",".join(repr(float(v)) for v in values)

        def resize_unchecked(a):
            a.resize(8, refcheck=False)  # refused while a buffer export is held (BufferError), whatever refcheck says
            return a.shape[0]

        KEPT = {}

        def keep(name, expression):
            import torch
            KEPT[name] = eval(expression, {"torch": torch, "np": np})

        def kept(name):
            return KEPT[name]

        def refcount_kept(name):
            return sys.getrefcount(KEPT[name])

        def policy_outcome(t, detach, upcast):
            from interop_helpers import torch_export as te
            try:
                return describe(te.prepare(t, detach=detach, upcast=upcast).numpy())
            except te.ExportError as e:
                return "!" + type(e).__name__
        """;

    private PythonSession _session = null!;
    private ScratchModule _scratch = null!;
    private PythonRef _helpers = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _session = PythonSession.InProcess();
        _scratch = ScratchModule.Load(_session, "direct_helpers.py", Helpers);
        _helpers = _scratch.Module;
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _scratch.Dispose();
        _session.Dispose();
    }

    // sys.getrefcount(array) through a call of the helpers (no evaluation scope whose release could lag behind).
    private long RefCount(NDArray array)
    {
        using var count = Call("refcount", array);
        return count.AsInt64();
    }

    // ---- TorchTensor ------------------------------------------------------------------------------------------------

    [Test]
    public void The_round_trip_releases_everything_at_dispose_and_numpy_can_resize_the_array_right_after()
    {
        Call("make_a").Dispose();
        var array = NDArray.Evaluate("__import__('sys').modules['" + ModuleName() + "'].A");
        var before = RefCount(array);
        var buffers = LiveObjects.PythonBuffers;
        for (var i = 0; i < 2000; i++)
        {
            using var tensor = TorchTensor.FromNumPy(array);
            using var exported = tensor.Numpy();
            using var view = exported.ViewReadOnly<float>();
            Assert.That(view.AsReadOnlySpan()[^1], Is.EqualTo(15f));
        }
        Assert.Multiple(() =>
        {
            Assert.That(RefCount(array), Is.EqualTo(before), "no reference to the array is left behind, without a GC");
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(buffers));
            Assert.That(PendingReleases.Queued, Is.Zero);
        });
        var tensorLeft = TorchTensor.FromNumPy(array);
        array.Dispose();
        Assert.Throws<PythonErrorException>(() => Call("resize_a"), "a live tensor refers to the array: resize refuses");
        tensorLeft.Dispose();
        using var resized = Call("resize_a");
        Assert.That(resized.AsInt64(), Is.EqualTo(32), "after Dispose nothing of ours refers to the array any more");
    }

    private string ModuleName()
    {
        using var name = _helpers.GetAttrValue("__name__");
        return name.AsString();
    }

    [Test]
    public void A_tensor_releases_its_reference_at_dispose_and_its_PyObject_goes_with_it()
    {
        using var array = NDArray.Evaluate("np.zeros(4, dtype=np.float64)");
        var before = RefCount(array);
        var tensor = TorchTensor.FromNumPy(array);
        Assert.That(RefCount(array), Is.EqualTo(before + 1), "the tensor refers to the array");
        var obj = tensor.PyObject;
        Assert.That(Eval<bool>("isinstance(t, torch.Tensor)", ("t", obj)));
        Assert.That(tensor.PyObject, Is.SameAs(obj), "one PyObject per tensor");
        tensor.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(RefCount(array), Is.EqualTo(before), "released at Dispose, not at the next GC");
            Assert.Throws<ObjectDisposedException>(() => _ = tensor.PyObject);
            Assert.Throws<ObjectDisposedException>(() => _ = tensor.Shape);
            Assert.Throws<ObjectDisposedException>(() => tensor.Numpy());
        });
        tensor.Dispose(); // harmless again
    }

    [Test]
    public void A_tensor_nobody_disposes_is_released_after_a_GC()
    {
        using var array = NDArray.Evaluate("np.zeros(4, dtype=np.float32)");
        var before = RefCount(array);
        Forget(array);
        Assert.That(RefCount(array), Is.EqualTo(before + 1), "the forgotten tensor (and the array exported from it) still refer to the array");
        // Finalizers queue the releases; the next GIL holder (or the release thread) performs them. Bounded polling: the
        // finalizer thread and the release thread run on their own schedule.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        long after;
        do
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            using (PythonRuntime.AcquireGil()) { } // the next GIL holder releases what finalizers queued
            after = RefCount(array);
        }
        while (after != before && DateTime.UtcNow < deadline);
        Assert.That(after, Is.EqualTo(before));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Forget(NDArray array)
    {
        var tensor = TorchTensor.FromNumPy(array);
        _ = tensor.Numpy(); // both unreachable from here on
    }

    [Test]
    public void Read_only_and_refused_arrays_give_the_same_typed_errors()
    {
        using var readOnly = NDArray.Evaluate("np.zeros(3)");
        Exec("a.flags.writeable = False", ("a", readOnly.PyObject));
        Assert.Throws<ReadOnlyBufferException>(() => TorchTensor.FromNumPy(readOnly));
        using var reversed = NDArray.Evaluate("np.arange(6.0)[::-1]");
        var e = Assert.Throws<TorchConversionException>(() => TorchTensor.FromNumPy(reversed))!;
        Assert.That(((PythonErrorException)e.InnerException!).PythonTraceback, Does.Contain("ValueError"));
        using var bf16 = TorchTensor.Evaluate("torch.ones(2, dtype=torch.bfloat16)");
        Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => bf16.Numpy());
        using var upcast = bf16.Numpy(new ExportOptions { Upcast = true });
        Assert.That(upcast.DTypeName, Is.EqualTo("float32"));
        using var grad = TorchTensor.Evaluate("torch.ones(2, requires_grad=True)");
        Assert.Throws<TensorRequiresGradException>(() => grad.Numpy(new ExportOptions { Detach = false }));
        using var prepared = grad.Prepare();
        Assert.That(prepared.RequiresGrad, Is.False);
    }

    private static readonly string[] s_exportFixtures =
    [
        "torch.arange(6, dtype=torch.float32).reshape(2, 3)", "torch.arange(12.0).reshape(3, 4).t()[::2]", "torch.tensor(3)",
        "torch.zeros(0, 4)", "torch.ones(3, dtype=torch.bool)", "torch.ones(3, requires_grad=True)",
        "torch.ones(3, requires_grad=True) * 2", "torch.tensor([1 + 2j, 3 - 1j]).conj()", "torch.tensor([1 + 2j]).conj().imag",
        "torch.ones(2, dtype=torch.bfloat16)", "torch.eye(3).to_sparse()", "torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)",
        "torch.empty(2, 3, device='meta')", "torch.nn.Parameter(torch.ones(2))",
    ];

    [Test]
    public void Numpy_gives_what_the_python_policy_gives_for_every_kind_of_tensor([ValueSource(nameof(s_exportFixtures))] string expression,
        [Values(true, false)] bool detach, [Values(false, true)] bool upcast)
    {
        // The oracle: prepare(t).numpy() in Python (the full policy, without export's shortcut): "dtype shape values" or the refusal's class.
        using var tensor = TorchTensor.Evaluate(expression);
        using var expected = Call("policy_outcome", tensor, detach, upcast);
        string actual;
        try
        {
            using var array = tensor.Numpy(new ExportOptions { Detach = detach, Upcast = upcast });
            using var described = Call("describe", array);
            actual = described.AsString();
        }
        catch (TensorExportException e)
        {
            actual = "!" + ((PythonErrorException)e.InnerException!).PythonType.Split('.')[^1];
        }
        Assert.That(actual, Is.EqualTo(expected.AsString()));
    }

    // Results of every kind: the export fixtures (tensors the policy shares, copies or refuses) and the other values a
    // call may return (plain values, containers holding tensors, subclasses, arrays that export_tree changes or refuses).
    private static readonly string[] s_resultFixtures =
    [
        .. s_exportFixtures,
        "torch.zeros([1] * 33)", "torch.arange(4, dtype=torch.int64)", "torch.arange(4, dtype=torch.uint8)",
        "[torch.ones(2), 1, 'a', None]", "(torch.ones(2, requires_grad=True),)", "{'w': torch.eye(2), 'n': 2.5}",
        "None", "True", "7", "2 ** 70", "2.5", "1 + 2j", "b'xy'", "'text'", "'\\ud800'", "np.arange(3, dtype='>i4')",
        "np.float32(1.5)", "np.zeros([1] * 32)", "np.arange(6.0).reshape(2, 3)[:, ::-1]", "[[[[]]]]", "object()",
    ];

    [Test]
    public void Call_results_are_exported_as_the_full_path_exports_them([ValueSource(nameof(s_resultFixtures))] string expression,
        [Values(true, false)] bool detach, [Values(false, true)] bool upcast)
    {
        // A default-grad call exports plain results and plain tensors on the .NET side (calls.call(export=False)); a session
        // with an output sink calls calls.call_with_output, which exports inside calls.call (export_tree) in the same grad
        // mode: the oracle. The object is made once, so both calls return the same one.
        Call("keep", expression, expression).Dispose();
        var options = new CallOptions { Export = new ExportOptions { Detach = detach, Upcast = upcast } };
        var fast = Outcome(_helpers);
        using var other = PythonSession.InProcess();
        other.Output = TextWriter.Null;
        using var sameModule = other.LoadFile(Path.Combine(_scratch.Folder, "direct_helpers.py"));
        var full = Outcome(sameModule);
        Assert.That(full, Does.Not.Contain("KeyError"), "both sessions call the same module, which holds the object");
        Assert.That(fast, Is.EqualTo(full));

        string Outcome(PythonRef helpers)
        {
            try
            {
                using var f = helpers.GetAttr("kept");
                using var value = f.Call([expression], options);
                return Describe(value);
            }
            catch (InteropException e)
            {
                return "!" + e.GetType().Name + ": " + e.Message;
            }
        }
    }

    private static string Describe(PythonValue value) => value.Kind switch
    {
        PythonValueKind.Tensor => $"{value} {value.PythonType} {Convert.ToHexString(TensorArgument.CopyOf(value.AsTensorData()).Bytes)}",
        PythonValueKind.Sequence => $"{value.PythonType}({string.Join(", ", value.Items.Select(Describe))})",
        PythonValueKind.Mapping => $"{{{string.Join(", ", value.Entries.Select(e => Describe(e.Key) + ": " + Describe(e.Value)))}}}",
        PythonValueKind.Bytes => "bytes " + Convert.ToHexString(value.AsBytes()),
        _ => $"{value} {value.PythonType}",
    };

    [Test]
    public void Many_tensor_results_leave_no_references_buffers_or_queued_releases_behind()
    {
        Call("keep", "many", "torch.arange(16, dtype=torch.float32)").Dispose();
        using var kept = _helpers.GetAttr("kept");
        long Count()
        {
            using var v = Call("refcount_kept", "many");
            return v.AsInt64();
        }
        var before = Count();
        var buffers = LiveObjects.PythonBuffers;
        for (var i = 0; i < 1000; i++)
        {
            using var v = kept.Call(["many"]);
            Assert.That(v.AsReadOnlySpan<float>()[15], Is.EqualTo(15f));
        }
        using (var refused = Call("keep", "many_bf16", "torch.ones(2, dtype=torch.bfloat16)"))
            for (var i = 0; i < 100; i++)
                Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => kept.Call(["many_bf16"]).Dispose());
        Assert.Multiple(() =>
        {
            Assert.That(Count(), Is.EqualTo(before), "the tensor's references");
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(buffers));
            Assert.That(PendingReleases.Queued, Is.Zero);
        });
    }

    [Test]
    public void A_disposed_array_is_refused_before_reaching_CPython()
    {
        var array = NDArray.Evaluate("np.zeros(2)");
        array.Dispose();
        Assert.Multiple(() =>
        {
            Assert.Throws<ObjectDisposedException>(() => TorchTensor.FromNumPy(array));
            Assert.Throws<ObjectDisposedException>(() => array.ViewReadOnly<double>());
            Assert.Throws<ObjectDisposedException>(() => _ = array.PyObject);
        });
    }

    // ---- session calls --------------------------------------------------------------------------------------------

    private PythonValue Call(string function, params object?[] args)
    {
        using var f = _helpers.GetAttr(function);
        return f.Call(args);
    }

    [Test]
    public void Many_calls_leave_no_references_buffers_or_queued_releases_behind()
    {
        using var identity = _helpers.GetAttr("identity");
        using var refcount = _helpers.GetAttr("refcount");
        using var boxValue = Call("box");
        var target = boxValue.AsRef();
        long Count()
        {
            using var v = refcount.Call(target);
            return v.AsInt64();
        }
        var before = Count();
        var buffers = LiveObjects.PythonBuffers;
        var floats = new float[16];
        for (var i = 0; i < 1000; i++)
        {
            using (var v = identity.Call(target)) Assert.That(v.Kind, Is.EqualTo(PythonValueKind.Object));
            using (var v = identity.Call(floats)) Assert.That(v.AsReadOnlySpan<float>().Length, Is.EqualTo(16));
            using (var v = identity.Call(2.5)) Assert.That(v.AsDouble(), Is.EqualTo(2.5));
            using (var v = identity.Call(7L)) Assert.That(v.AsInt64(), Is.EqualTo(7));
            using (var v = identity.Call([null])) Assert.That(v.IsNone);
        }
        Assert.Multiple(() =>
        {
            Assert.That(Count(), Is.EqualTo(before));
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(buffers));
            Assert.That(PendingReleases.Queued, Is.Zero);
        });
    }

    // Tensor arguments are copied into a fresh np.empty through a plain writable buffer request (PythonBuffer.CopyIntoContiguous);
    // bool arrays through the full request, which canonicalises them. Values, shapes and dtypes must survive either way.
    private static IEnumerable<TestCaseData> ArgumentArrays()
    {
        yield return new TestCaseData(new float[] { 0f, -1.5f, float.MaxValue, float.Epsilon }, "float32 [4]");
        yield return new TestCaseData(new double[,] { { 1, 2, 3 }, { 4, 5, 6 } }, "float64 [2, 3]");
        yield return new TestCaseData(new long[] { long.MinValue, -1, long.MaxValue }, "int64 [3]");
        yield return new TestCaseData(Array.Empty<int>(), "int32 [0]");
        yield return new TestCaseData(new byte[] { 0, 255 }, "uint8 [2]");
        yield return new TestCaseData(new short[,,] { { { -7 } } }, "int16 [1, 1, 1]");
        yield return new TestCaseData(new bool[] { true, false, true }, "bool [3]");
    }

    [TestCaseSource(nameof(ArgumentArrays))]
    public void Tensor_arguments_arrive_with_their_values_shapes_and_dtypes_as_arrays_and_tensors(Array input, string dtypeAndShape)
    {
        var expected = input.Cast<object>().Select(v => Convert.ToDouble(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        foreach (var arrays in new[] { ArrayConversion.NumPy, ArrayConversion.Torch })
        {
            using var f = _helpers.GetAttr("describe_values");
            using var described = f.Call([input], new CallOptions { Arrays = arrays });
            var parts = described.AsString().Split('|');
            Assert.That(parts[0], Is.EqualTo((arrays == ArrayConversion.Torch ? "torch." : "") + dtypeAndShape), arrays.ToString());
            Assert.That(parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture)),
                        Is.EqualTo(expected), arrays.ToString());
        }
    }

    [Test]
    public void The_plain_buffer_copy_refuses_wrong_sizes_and_non_contiguous_or_read_only_exporters_and_releases_the_buffer()
    {
        using var fresh = NDArray.Evaluate("np.zeros(4, dtype=np.float32)");
        using var strided = NDArray.Evaluate("np.zeros(8, dtype=np.float32)[::2]");
        using var readOnly = NDArray.Evaluate("np.frombuffer(bytes(16), dtype=np.float32)");
        var before = RefCount(fresh);
        float[] values = [1.5f, -2f, 3f, float.MinValue];
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        Assert.Multiple(() =>
        {
            using (PythonRuntime.AcquireGil())
            {
                Assert.Throws<LayoutException>(() => global::Interop.Buffers.PythonBuffer.CopyIntoContiguous(fresh.ObjectAddress, bytes.AsSpan(0, 12)), "too few bytes");
                Assert.Throws<LayoutException>(() => global::Interop.Buffers.PythonBuffer.CopyIntoContiguous(fresh.ObjectAddress, new byte[20]), "too many bytes");
                Assert.Throws<PythonErrorException>(() => global::Interop.Buffers.PythonBuffer.CopyIntoContiguous(strided.ObjectAddress, bytes), "not contiguous: NumPy refuses a plain request");
                Assert.Throws<PythonErrorException>(() => global::Interop.Buffers.PythonBuffer.CopyIntoContiguous(readOnly.ObjectAddress, bytes), "read-only");
                global::Interop.Buffers.PythonBuffer.CopyIntoContiguous(fresh.ObjectAddress, bytes);
            }
            Assert.That(fresh.ToArray<float>(), Is.EqualTo(values), "the right size is copied");
            Assert.That(RefCount(fresh), Is.EqualTo(before), "every request released its buffer (NumPy's view holds a reference)");
            using var resized = Call("resize_unchecked", fresh);
            Assert.That(resized.AsInt64(), Is.EqualTo(8), "no export is left on the array: NumPy can resize it");
        });
    }

    [Test]
    public void Plain_results_keep_their_kinds_and_type_names()
    {
        using var maxLong = Call("identity", long.MaxValue);
        using var minLong = Call("identity", long.MinValue);
        using var minusOne = Call("identity", -1L);
        using var trueValue = Call("identity", true);
        using var colour = Call("colour");
        using var ratio = Call("ratio");
        using var nan = Call("identity", double.NaN);
        Assert.Multiple(() =>
        {
            Assert.That(maxLong.AsInt64(), Is.EqualTo(long.MaxValue));
            Assert.That(minLong.AsInt64(), Is.EqualTo(long.MinValue));
            Assert.That(minusOne.AsInt64(), Is.EqualTo(-1), "-1 is a value, not PyLong_AsLongLong's error marker");
            Assert.That((trueValue.Kind, trueValue.PythonType), Is.EqualTo((PythonValueKind.Bool, "bool")));
            Assert.That((colour.Kind, colour.AsInt64()), Is.EqualTo((PythonValueKind.Int, 3L)));
            Assert.That(colour.PythonType, Does.EndWith("Colour"), "an int subclass keeps its own name");
            Assert.That(ratio.PythonType, Does.EndWith("Ratio"), "a float subclass keeps its own name");
            Assert.That(ratio.AsDouble(), Is.EqualTo(0.5));
            Assert.That(double.IsNaN(nan.AsDouble()));
        });
        using var inList = Call("identity", new List<object?> { null, 1.5 }); // plain values inside a list
        Assert.That(inList.Items.Select(v => v.Kind), Is.EqualTo(new[] { PythonValueKind.None, PythonValueKind.Float }));
        using var beyond = _session.Import("builtins");
        using var pow = beyond.GetAttr("pow");
        using var beyond64 = pow.Call(2, 70);
        Assert.That((beyond64.Kind, beyond64.PythonType), Is.EqualTo((PythonValueKind.Object, "int")), "beyond 64 bits: stays a Python object");
    }

    [Test]
    public void A_class_renamed_between_calls_is_reported_by_its_new_name()
    {
        using (var first = Call("renamed"))
            Assert.That(first.PythonType, Does.EndWith(".Renamed"));
        Call("rename", "Other").Dispose();
        using var second = Call("renamed");
        Assert.That(second.PythonType, Does.EndWith(".Other"), "names of classes that can change are not cached");
    }

    [Test]
    public void Errors_of_the_callee_keep_their_type_message_and_traceback()
    {
        var e = Assert.Throws<PythonErrorException>(() => Call("fail", "k"))!;
        Assert.Multiple(() =>
        {
            Assert.That(e.PythonType, Is.EqualTo("KeyError"));
            Assert.That(e.PythonMessage, Does.Contain("no such key: 'k'"));
            Assert.That(e.PythonTraceback, Does.Contain("in fail").And.Contain("direct_helpers.py"));
        });
        Assert.Throws<UnsupportedArgumentException>(() => Call("identity", new object()));
        var grad = Assert.Throws<PythonErrorException>(() =>
        {
            using var f = _helpers.GetAttr("noop");
            f.Call([], new CallOptions { GradMode = (GradMode)7 }).Dispose();
        })!;
        Assert.That(grad.PythonMessage, Does.Contain("unknown grad mode 7"));
    }
}
