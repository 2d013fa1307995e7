using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Embedding;
using Interop.Errors;
using Interop.NumPy;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>NumPy / Python buffers → TorchSharp: zero-copy and copy, layouts, dtypes, refusals, lifetime.</summary>
[TestFixture]
[Category("torchsharp")]
[Category("numpy")]
public class NumPyToTorchSharpTests : TorchSharpFixture
{
    // Layouts NumPy can produce with non-negative strides: zero-copy keeps them (as_strided), values checked against NumPy.
    private static readonly string[] s_sharedLayouts =
    [
        "a", "a.T", "a[::2]", "a[:, 1::2]", "a[1:, :3]", "a.reshape(4, 3)[:, None, :]", "a[:0]", "np.asarray(a[1, 2])", "np.asfortranarray(a)",
        "a.reshape(2, 2, 3).transpose(2, 0, 1)[::2]",
    ];

    [TestCaseSource(nameof(s_sharedLayouts))]
    public void Zero_copy_keeps_the_layout_and_values(string layout)
    {
        using var a = NDArray.Evaluate($"(lambda a: {layout})(np.arange(12, dtype=np.float32).reshape(3, 4) * 1.5)");
        using var t = a.AsTorchSharp();
        Assert.Multiple(() =>
        {
            Assert.That(t.dtype, Is.EqualTo(torch.ScalarType.Float32));
            Assert.That(t.shape, Is.EqualTo(a.Shape));
            if (t.numel() > 0)
            {
                // Only dimensions longer than 1 decide addresses; for the others NumPy's arr.strides (NDArray.Strides) and
                // libtorch may report any value (a[:, None, :] has NumPy stride 0, libtorch's contiguous stride 3).
                var significant = Enumerable.Range(0, a.Shape.Length).Where(i => a.Shape[i] > 1).ToArray();
                Assert.That(significant.Select(i => t.stride()[i]), Is.EqualTo(significant.Select(i => a.Strides[i] / 4)), "element strides");
                Assert.That(TorchSharpData.Address(t), Is.EqualTo(a.Address), "same memory");
            }
            if (t.numel() > 0)
                Assert.That(t.contiguous().data<float>().ToArray(), Is.EqualTo(a.ToArray<float>()));
        });
    }

    [Test]
    public void Writes_are_seen_both_ways()
    {
        using var a = NDArray.Evaluate("np.zeros((2, 3), dtype=np.float64)");
        using var t = a.AsTorchSharp();
        t[1, 2] = torch.tensor(42.0);
        using (var view = a.View<double>())
        {
            Assert.That(view.AsSpan()[5], Is.EqualTo(42.0), "TorchSharp write seen by NumPy");
            view.AsSpan()[1] = -7;
        }
        Assert.That(t[0, 1].item<double>(), Is.EqualTo(-7.0), "NumPy write seen by TorchSharp");
    }

    [Test]
    public void A_copy_is_independent_and_c_contiguous()
    {
        using var a = NDArray.Evaluate("np.arange(12, dtype=np.int32).reshape(3, 4)");
        using var transposed = NDArray.Wrap(PythonRuntime.Run(() => a.PyObject.GetAttr("T")));
        using var t = transposed.CopyToTorchSharp();
        using (var view = a.View<int>())
            view.AsSpan().Fill(-1);
        Assert.Multiple(() =>
        {
            Assert.That(t.is_contiguous(), Is.True);
            Assert.That(t.shape, Is.EqualTo(new long[] { 4, 3 }));
            Assert.That(t.data<int>().ToArray(), Is.EqualTo(new[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }));
            Assert.That(TorchSharpData.Address(t), Is.Not.EqualTo(a.Address));
        });
    }

    [TestCase("a[::-1]")]
    [TestCase("a[:, ::-2]")]
    [TestCase("a[::-1, ::-1].T")]
    public void Negative_strides_are_refused_for_zero_copy_and_reversed_by_the_copy(string layout)
    {
        using var a = NDArray.Evaluate($"(lambda a: {layout})(np.arange(12, dtype=np.int16).reshape(3, 4))");
        var e = Assert.Throws<LayoutException>(() => a.AsTorchSharp());
        Assert.That(e!.Message, Does.Contain("negative strides").And.Contain("Fix"));
        using var t = a.CopyToTorchSharp();
        Assert.Multiple(() =>
        {
            Assert.That(t.shape, Is.EqualTo(a.Shape));
            Assert.That(t.contiguous().data<short>().ToArray(), Is.EqualTo(a.ToArray<short>()));
        });
    }

    [TestCase("np.frombuffer(b'\\x00\\x00\\x80?\\x00\\x00\\x00@', dtype=np.float32)")]
    [TestCase("(lambda a: (a.setflags(write=False), a)[1])(np.arange(4, dtype=np.float32))")]
    [TestCase("np.broadcast_to(np.arange(2, dtype=np.float32), (3, 2))")]
    public void Read_only_buffers_are_never_shared_writable_but_copy(string expression)
    {
        using var a = NDArray.Evaluate(expression);
        Assert.That(a.IsWriteable, Is.False);
        var e = Assert.Throws<ReadOnlyBufferException>(() => a.AsTorchSharp());
        Assert.That(e!.Message, Does.Contain("read-only").And.Contain("copy"));
        using var t = a.CopyToTorchSharp();
        Assert.That(t.contiguous().data<float>().ToArray(), Is.EqualTo(a.ToArray<float>()));
    }

    [Test]
    public void Every_dtype_TorchSharp_has_maps_through_the_table_in_both_modes()
    {
        foreach (var dtype in DType.All.Where(d => d.NumPyName is not null && d.TorchSharpScalarType is not null))
        {
            using var a = NDArray.Evaluate($"(np.arange(6) % 2 == 1).astype(np.{dtype.NumPyName}).reshape(2, 3)[:, ::2]");
            using var shared = a.AsTorchSharp();
            using var copied = a.CopyToTorchSharp();
            using var back = copied.ToNumPy();
            Assert.Multiple(() =>
            {
                Assert.That((int)shared.dtype, Is.EqualTo(dtype.TorchSharpScalarType), dtype.Name);
                Assert.That((int)copied.dtype, Is.EqualTo(dtype.TorchSharpScalarType), dtype.Name);
                Assert.That(NumPyCheck.SameArray(a, back), Is.True, dtype.Name);
                Assert.That(shared.eq(copied).all().item<bool>(), Is.True, dtype.Name);
            });
        }
    }

    [TestCase("uint16", "astype(np.int32)")]
    [TestCase("uint32", "astype(np.int64)")]
    [TestCase("uint64", "view(np.int64)")]
    public void Unsigned_types_TorchSharp_lacks_are_refused_with_a_fix(string dtype, string fix)
    {
        using var a = NDArray.Evaluate($"np.arange(3, dtype=np.{dtype})");
        var shared = Assert.Throws<TorchSharpDTypeException>(() => a.AsTorchSharp());
        var copied = Assert.Throws<TorchSharpDTypeException>(() => a.CopyToTorchSharp());
        Assert.Multiple(() =>
        {
            Assert.That(shared!.Message, Does.Contain(dtype).And.Contain(fix));
            Assert.That(copied!.DType, Is.EqualTo(dtype));
        });
    }

    [Test]
    public void Big_endian_data_is_refused_for_zero_copy_and_swapped_by_the_copy()
    {
        using var a = NDArray.Evaluate("np.arange(5, dtype='>i4')");
        Assert.Throws<ByteOrderException>(() => a.AsTorchSharp());
        using var t = a.CopyToTorchSharp();
        Assert.That(t.data<int>().ToArray(), Is.EqualTo(new[] { 0, 1, 2, 3, 4 }));
    }

    [Test]
    public void Any_buffer_exporter_works_bytearray_shared_and_bytes_copied()
    {
        using var bytearray = new PyHandle("bytearray(b'abc')");
        using var t = TorchSharpTensors.FromBuffer(bytearray.Object, TorchSharpMemory.Share);
        t[0] = torch.tensor((byte)'z');
        Assert.That(bytearray.ToString(), Is.EqualTo("bytearray(b'zbc')"));
        using var bytes = new PyHandle("b'xyz'");
        Assert.Throws<ReadOnlyBufferException>(() => TorchSharpTensors.FromBuffer(bytes.Object, TorchSharpMemory.Share));
        using var copy = TorchSharpTensors.FromBuffer(bytes.Object, TorchSharpMemory.Copy);
        Assert.That(copy.data<byte>().ToArray(), Is.EqualTo("xyz"u8.ToArray()));
    }

    [Test]
    public void Zero_d_and_zero_size_arrays_convert()
    {
        using var scalar = NDArray.Evaluate("np.array(2.5, dtype=np.float32)");
        using var ts = scalar.AsTorchSharp();
        using var empty = NDArray.Evaluate("np.zeros((2, 0, 3), dtype=np.int64)");
        using var te = empty.CopyToTorchSharp();
        using var tz = empty.AsTorchSharp();
        Assert.Multiple(() =>
        {
            Assert.That(ts.shape, Is.Empty);
            Assert.That(ts.item<float>(), Is.EqualTo(2.5f));
            Assert.That(te.shape, Is.EqualTo(new long[] { 2, 0, 3 }));
            Assert.That(tz.shape, Is.EqualTo(new long[] { 2, 0, 3 }));
        });
    }

    [Test]
    public void The_tensor_holds_the_buffer_until_its_storage_is_freed_also_by_views_and_after_the_array_is_disposed()
    {
        Settle();
        var before = LiveObjects.PythonBuffers;
        var a = NDArray.Evaluate("np.arange(6, dtype=np.float32)");
        var t = a.AsTorchSharp();
        var view = t[torch.TensorIndex.Slice(2, 5)];
        a.Dispose();
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before + 1));
        t.Dispose();
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before + 1), "the view still holds the storage");
        Assert.That(view.data<float>().ToArray(), Is.EqualTo(new float[] { 2, 3, 4 }), "memory still valid after the NDArray was disposed");
        view.Dispose();
        Assert.That(Eventually(() => LiveObjects.PythonBuffers <= before), Is.True, "released when the storage died");
    }

    [Test]
    public void Undisposed_tensors_release_their_buffers_from_the_finalizer_thread_without_the_gil()
    {
        Settle();
        var before = LiveObjects.PythonBuffers;
        var wrapsBefore = TorchSharpTensors.LiveWrappedMemory;
        Assert.That(wrapsBefore, Is.Zero, "no wrapped memory outlives the earlier tests");
        MakeGarbage();
        Assert.That(Eventually(() => LiveObjects.PythonBuffers <= before && TorchSharpTensors.LiveWrappedMemory <= wrapsBefore), Is.True);

        static void MakeGarbage()
        {
            using var a = NDArray.Evaluate("np.ones((64, 64), dtype=np.float32)");
            for (var i = 0; i < 50; i++)
                _ = a.AsTorchSharp(); // never disposed: TorchSharp's finalizer frees the storage, libtorch calls the deleter there
        }
    }

    [Test]
    public void A_thread_holding_the_gil_can_wait_for_finalizers_that_free_tensors_over_python_buffers()
    {
        // The deadlock this design rules out: finalizers free TorchSharp storages whose deleters must release Python
        // buffers, while the thread that holds the GIL waits for those finalizers.
        Settle();
        var before = LiveObjects.PythonBuffers;
        MakeGarbage();
        using (PythonRuntime.AcquireGil())
        {
            for (var i = 0; i < 3; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }
        Assert.That(Eventually(() => LiveObjects.PythonBuffers <= before), Is.True);

        static void MakeGarbage()
        {
            using var a = NDArray.Evaluate("np.ones(1000, dtype=np.int32)");
            for (var i = 0; i < 20; i++)
                _ = a.AsTorchSharp();
        }
    }

    [Test]
    public void Concurrent_zero_copy_conversions_release_everything()
    {
        Settle();
        var before = LiveObjects.PythonBuffers;
        using var a = NDArray.Evaluate("np.arange(1000, dtype=np.float64)");
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            using var t = a.AsTorchSharp();
            Assert.That(t[i % 1000].item<double>(), Is.EqualTo(i % 1000));
        });
        Assert.That(Eventually(() => LiveObjects.PythonBuffers <= before), Is.True);
    }
}
