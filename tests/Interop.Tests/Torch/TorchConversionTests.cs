using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using Interop.Torch;
using static Interop.Tests.Torch.TorchTestPython;

namespace Interop.Tests.Torch;

[TestFixture]
[Category("numpy")]
[Category("torch")]
public class TorchConversionTests
{
    // torch.from_numpy accepts these NumPy dtypes in every PyTorch generation; uint16/32/64 only from 2.3 on.
    private static IEnumerable<DType> FromNumPyDTypes() =>
        DType.All.Where(d => d.NumPyName is not null && (d.Kind != DTypeKind.UnsignedInteger || d == DType.UInt8));

    [TestCaseSource(nameof(FromNumPyDTypes))]
    public void FromNumPy_keeps_the_dtype_and_shares_the_address(DType dtype)
    {
        using var array = NDArray.Empty(dtype, 2, 3);
        using var tensor = TorchTensor.FromNumPy(array);
        Assert.Multiple(() =>
        {
            Assert.That(tensor.DTypeName, Is.EqualTo(dtype.TorchName));
            Assert.That(tensor.Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(tensor.DataPointer, Is.EqualTo(array.Address), "from_numpy shares memory");
        });
    }

    [Test]
    public void FromNumPy_shares_memory_both_ways()
    {
        var data = new float[] { 1, 2, 3, 4, 5, 6 };
        using var array = NDArray.CopyFrom<float>(data, 2, 3);
        using var tensor = TorchTensor.FromNumPy(array);
        using (var view = array.View<float>())
            view.AsSpan()[4] = 40;
        Assert.That(Eval<double>("float(t[1, 1])", ("t", tensor.PyObject)), Is.EqualTo(40), "a write through the array is seen by the tensor");
        Exec("t[0, 2] = -3", ("t", tensor.PyObject));
        using (var view = array.ViewReadOnly<float>())
            Assert.That(view.AsReadOnlySpan()[2], Is.EqualTo(-3), "a write through the tensor is seen by the array");
    }

    [Test]
    public void FromNumPy_refuses_negative_strides_with_PyTorchs_own_message()
    {
        using var reversed = NDArray.Evaluate("np.arange(6.0)[::-1]");
        var e = Assert.Throws<TorchConversionException>(() => TorchTensor.FromNumPy(reversed))!;
        Assert.Multiple(() =>
        {
            Assert.That(e.PyTorchMessage, Does.Contain("negative"));
            Assert.That(e.Message, Does.Contain(e.PyTorchMessage).And.Contain("CopyFromNumPy"));
            Assert.That(e.InnerException, Is.TypeOf<PythonErrorException>());
            Assert.That(((PythonErrorException)e.InnerException!).PythonType, Is.EqualTo("ValueError"));
        });
    }

    [Test]
    public void FromNumPy_refuses_big_endian_arrays()
    {
        using var big = NDArray.Evaluate("np.arange(3, dtype='>f4')");
        var e = Assert.Throws<TorchConversionException>(() => TorchTensor.FromNumPy(big))!;
        Assert.That(e.PyTorchMessage, Does.Contain("byte order"));
    }

    [Test]
    public void FromNumPy_of_uint16_is_refused_on_torch_1_and_shared_on_torch_2()
    {
        using var array = NDArray.Evaluate("np.arange(4, dtype=np.uint16)");
        if (TorchMajor < 2)
        {
            // PyTorch 1.13 has no uint16 tensors: its own TypeError lists the dtypes it accepts.
            var e = Assert.Throws<TorchConversionException>(() => TorchTensor.FromNumPy(array))!;
            Assert.That(e.PyTorchMessage, Does.Contain("uint16"));
            return;
        }
        using var tensor = TorchTensor.FromNumPy(array);
        Assert.That(tensor.DTypeName, Is.EqualTo("torch.uint16"));
        Assert.That(tensor.DataPointer, Is.EqualTo(array.Address));
    }

    [Test]
    public void CopyFromNumPy_gives_a_contiguous_copy_of_what_from_numpy_refuses()
    {
        using var reversed = NDArray.Evaluate("np.arange(6.0).reshape(2, 3)[::-1, ::-1]");
        using var tensor = TorchTensor.CopyFromNumPy(reversed);
        Assert.Multiple(() =>
        {
            Assert.That(tensor.IsContiguous);
            Assert.That(tensor.Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(Eval<string>("str(t.flatten().tolist())", ("t", tensor.PyObject)), Is.EqualTo(Eval<string>("str(a.flatten().tolist())", ("a", reversed.PyObject))));
        });
        using var big = NDArray.Evaluate("np.arange(3, dtype='>i4')");
        using var fromBig = TorchTensor.CopyFromNumPy(big);
        Assert.That(Eval<string>("str(t.tolist())", ("t", fromBig.PyObject)), Is.EqualTo("[0, 1, 2]"));
    }

    [Test]
    public void CopyFromNumPy_never_shares()
    {
        using var array = NDArray.Evaluate("np.arange(4.0)");
        using var tensor = TorchTensor.CopyFromNumPy(array);
        Assert.That(tensor.DataPointer, Is.Not.EqualTo(array.Address));
        Exec("a[0] = 99", ("a", array.PyObject));
        Assert.That(Eval<double>("float(t[0])", ("t", tensor.PyObject)), Is.EqualTo(0));
    }

    [Test]
    public void CopyFromNumPy_still_refuses_dtypes_PyTorch_lacks()
    {
        using var strings = NDArray.Evaluate("np.array(['a', 'b'])");
        Assert.Throws<TorchConversionException>(() => TorchTensor.CopyFromNumPy(strings));
    }

    [Test]
    public void A_shared_dotnet_array_stays_pinned_exactly_as_long_as_PyTorch_holds_it()
    {
        var before = LiveObjects.ExportedToPython;
        var data = new float[] { 1, 2, 3, 4 };
        var array = NDArray.Share(data);
        var tensor = TorchTensor.FromNumPy(array);
        Exec("__main__.interop_kept_tensor = t[1:]", ("t", tensor.PyObject));
        tensor.Dispose();
        array.Dispose();
        Exec("gc.collect()");
        Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(before + 1), "a tensor in Python still uses the .NET memory");
        data[2] = 30;
        Assert.That(Eval<double>("float(__main__.interop_kept_tensor[1])"), Is.EqualTo(30), "zero-copy: the tensor reads the .NET array");
        Exec("__main__.interop_kept_tensor[0] = -2");
        Assert.That(data[1], Is.EqualTo(-2), "and writes to it");
        Exec("del __main__.interop_kept_tensor\ngc.collect()");
        Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(before), "unpinned once PyTorch dropped the last tensor");
    }
}
