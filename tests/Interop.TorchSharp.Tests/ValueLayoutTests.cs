using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using Interop.Sessions;

namespace Interop.TorchSharp.Tests;

/// <summary>
/// PythonValue.ToTorchSharp(Copy) of the layouts an in-process result can have (an ndarray returned by Python: reversed
/// <c>a[::-1]</c>, a field of a record array whose byte strides are not whole elements), and WrapMemory's checks of
/// shapes and strides that overflow. The tensor data is built by hand (an in-process session cannot run next to
/// TorchSharp here: this Python has torch), over pinned .NET memory with the strides such a result has.
/// </summary>
[TestFixture]
[Category("torchsharp")]
public class ValueLayoutTests : TorchSharpFixture
{
    private sealed class StridedData : TensorData
    {
        private readonly GCHandle _pin;
        private readonly long _offset;

        public StridedData(byte[] bytes, long offset, DType dtype, long[] shape, long[] byteStrides) : base(dtype, shape, byteStrides)
        {
            _pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
            _offset = offset;
        }

        protected override nint GetAddress() => _pin.AddrOfPinnedObject() + (nint)_offset;

        protected override void Dispose(bool disposing)
        {
            _pin.Free();
            base.Dispose(disposing);
        }
    }

    [Test]
    public void Copy_of_a_reversed_result_gives_the_elements_in_order()
    {
        // np.arange(6.0)[::-2]: address of element 5, stride -16 bytes.
        var bytes = MemoryMarshal.AsBytes<double>([0, 1, 2, 3, 4, 5]).ToArray();
        using var value = PythonValue.FromTensor(new StridedData(bytes, 5 * sizeof(double), DType.Float64, [3], [-16]), "numpy.ndarray");
        using var t = value.ToTorchSharp(TorchSharpMemory.Copy);
        Assert.That(t.data<double>().ToArray(), Is.EqualTo(value.ToArray<double>()));
        Assert.That(t.data<double>().ToArray(), Is.EqualTo(new double[] { 5, 3, 1 }));
    }

    [Test]
    public void Copy_of_a_record_field_whose_strides_are_not_whole_elements_gives_the_right_values()
    {
        // np.zeros(3, dtype='u1,f4')['f1'] with values 1.5, 2.5, 3.5: float32 at byte offset 1 of 5-byte records.
        var bytes = new byte[15];
        for (var i = 0; i < 3; i++)
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 5 + 1), 1.5f + i);
        using var value = PythonValue.FromTensor(new StridedData(bytes, 1, DType.Float32, [3], [5]), "numpy.ndarray");
        Assert.That(value.ToArray<float>(), Is.EqualTo(new[] { 1.5f, 2.5f, 3.5f }), "the reference: PythonValue's own copy");
        using var t = value.ToTorchSharp(TorchSharpMemory.Copy);
        Assert.That(t.data<float>().ToArray(), Is.EqualTo(new[] { 1.5f, 2.5f, 3.5f }));
    }

    [Test]
    public void Copy_of_a_2d_result_with_a_reversed_and_a_transposed_dimension()
    {
        // a 3x4 int32 C array viewed as a.T[::-1]: shape (4, 3), strides (-4, 16) from element [0, 3].
        var source = Enumerable.Range(0, 12).ToArray();
        var bytes = MemoryMarshal.AsBytes<int>(source).ToArray();
        using var value = PythonValue.FromTensor(new StridedData(bytes, 3 * sizeof(int), DType.Int32, [4, 3], [-4, 16]), "numpy.ndarray");
        using var t = value.ToTorchSharp(TorchSharpMemory.Copy);
        Assert.That(t.shape, Is.EqualTo(new long[] { 4, 3 }));
        Assert.That(t.data<int>().ToArray(), Is.EqualTo(value.ToArray<int>()));
        Assert.That(t.data<int>().ToArray().Take(3), Is.EqualTo(new[] { 3, 7, 11 }));
    }

    [TestCase("np.zeros(4, dtype='u1,f4')")]
    [TestCase("np.zeros((3, 2), dtype='u1,f4')[::-1]")]
    public void CopyToTorchSharp_copies_a_record_field_whose_strides_are_not_whole_elements(string records)
    {
        // The zero-copy refusal names the copy as the way out, so the copy must handle the layout.
        using var field = NDArray.Evaluate($"(lambda r: (r.__setitem__('f1', np.arange(r.size, dtype=np.float32).reshape(r.shape) + 0.5), r['f1'])[1])({records})");
        Assert.Throws<LayoutException>(() => field.AsTorchSharp().Dispose());
        Settle();
        var wraps = TorchSharpTensors.LiveWrappedMemory;
        var buffers = Interop.Diagnostics.LiveObjects.PythonBuffers;
        using (var t = field.CopyToTorchSharp())
        {
            Assert.That(t.shape, Is.EqualTo(field.Shape));
            Assert.That(t.data<float>().ToArray(), Is.EqualTo(field.ToArray<float>()));
        }
        for (var i = 0; i < 200; i++)
            field.CopyToTorchSharp().Dispose();
        Assert.That(Eventually(() => TorchSharpTensors.LiveWrappedMemory <= wraps && Interop.Diagnostics.LiveObjects.PythonBuffers <= buffers), Is.True,
            "the byte views over the source and the destination are released with the copy");
    }

    [Test]
    public void FromBuffer_of_a_disposed_PyObject_throws_ObjectDisposedException()
    {
        // A disposed pythonnet PyObject has a null handle: it must not reach PyObject_GetBuffer (a segfault).
        var exporter = Interop.Embedding.PythonRuntime.Run(() => Python.Runtime.PyModule.FromString("m", "import numpy as np\na = np.ones(3)").GetAttr("a"));
        using (Interop.Embedding.PythonRuntime.AcquireGil())
            exporter.Dispose();
        Assert.Throws<ObjectDisposedException>(() => TorchSharpTensors.FromBuffer(exporter, TorchSharpMemory.Share).Dispose());
        Assert.Throws<ObjectDisposedException>(() => TorchSharpTensors.FromBuffer(exporter, TorchSharpMemory.Copy).Dispose());
    }

    [Test]
    public void WrapMemory_of_a_shape_whose_element_count_overflows_is_refused_and_disposes_the_owner()
    {
        var owner = new CountingOwner();
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchSharpTensors.WrapMemory(0x1000, DType.Float32, [long.MaxValue / 2, 4], [], owner));
        Assert.That(owner.Disposals, Is.EqualTo(1), "the documented contract: when WrapMemory throws, the owner is disposed");
    }

    [Test]
    public void WrapMemory_of_strides_whose_extent_overflows_is_refused_and_disposes_the_owner()
    {
        var owner = new CountingOwner();
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchSharpTensors.WrapMemory(0x1000, DType.Float32, [3, 2], [long.MaxValue / 2, 1], owner));
        Assert.That(owner.Disposals, Is.EqualTo(1));
    }

    private sealed class CountingOwner : IDisposable
    {
        public int Disposals;

        public void Dispose() => Interlocked.Increment(ref Disposals);
    }
}
