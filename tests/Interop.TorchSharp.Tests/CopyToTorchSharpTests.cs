using Interop.NumPy;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

[TestFixture]
[Category("torchsharp")]
[Category("numpy")]
public class CopyToTorchSharpTests : TorchSharpFixture
{
    [Test]
    public void TorchSharp_loads_and_the_libstdcxx_check_agrees()
    {
        var (path, ok) = TorchSharpSupport.InspectLibStdCxx();
        Assert.That(ok, Is.True, path);
        using var t = torch.arange(6).reshape(2, 3);
        Assert.That(t.shape, Is.EqualTo(new long[] { 2, 3 }));
    }

    [Test]
    public void A_strided_numpy_array_copies_into_a_tensor_with_its_shape_dtype_and_values()
    {
        using var a = NDArray.Evaluate("np.arange(12, dtype=np.float32).reshape(3, 4).T[::2]");
        using var t = a.CopyToTorchSharp<float>();
        var expected = a.ToArray<float>();
        Assert.Multiple(() =>
        {
            Assert.That(t.dtype, Is.EqualTo(torch.ScalarType.Float32));
            Assert.That(t.shape, Is.EqualTo(a.Shape));
            Assert.That(t.contiguous().data<float>().ToArray(), Is.EqualTo(expected));
            Assert.That(expected, Is.EqualTo(new float[] { 0, 4, 8, 2, 6, 10 }));
        });
    }

    [Test]
    public void Int64_and_bool_keep_their_dtypes()
    {
        using var ints = NDArray.Evaluate("np.array([[1, -2], [3, 2**62]], dtype=np.int64)");
        using var ti = ints.CopyToTorchSharp<long>();
        using var bools = NDArray.Evaluate("np.array([True, False, True])");
        using var tb = bools.CopyToTorchSharp<bool>();
        Assert.Multiple(() =>
        {
            Assert.That(ti.dtype, Is.EqualTo(torch.ScalarType.Int64));
            Assert.That(ti[1, 1].item<long>(), Is.EqualTo(1L << 62));
            Assert.That(tb.dtype, Is.EqualTo(torch.ScalarType.Bool));
            Assert.That(tb.data<bool>().ToArray(), Is.EqualTo(new[] { true, false, true }));
        });
    }

    [Test]
    public void The_typed_copy_refuses_a_mismatched_element_type()
    {
        using var a = NDArray.Evaluate("np.zeros(3, dtype=np.float32)");
        Assert.Throws<Interop.Errors.ElementTypeMismatchException>(() => a.CopyToTorchSharp<double>());
    }
}

[TestFixture]
[Category("torchsharp")]
public class DTypeTableTorchSharpTests
{
    [Test]
    public void The_dtype_tables_ScalarType_codes_are_TorchSharps()
    {
        // No native code runs here: the enum is plain metadata, so this holds in every environment.
        var expected = new Dictionary<string, torch.ScalarType>
        {
            ["bool"] = torch.ScalarType.Bool, ["int8"] = torch.ScalarType.Int8, ["int16"] = torch.ScalarType.Int16,
            ["int32"] = torch.ScalarType.Int32, ["int64"] = torch.ScalarType.Int64, ["uint8"] = torch.ScalarType.Byte,
            ["float16"] = torch.ScalarType.Float16, ["bfloat16"] = torch.ScalarType.BFloat16, ["float32"] = torch.ScalarType.Float32,
            ["float64"] = torch.ScalarType.Float64, ["complex64"] = torch.ScalarType.ComplexFloat32, ["complex128"] = torch.ScalarType.ComplexFloat64,
        };
        foreach (var dtype in Interop.DTypes.DType.All)
        {
            if (expected.TryGetValue(dtype.Name, out var scalar))
                Assert.That(dtype.TorchSharpScalarType, Is.EqualTo((int)scalar), dtype.Name);
            else
                Assert.That(dtype.TorchSharpScalarType, Is.Null, $"{dtype.Name}: TorchSharp 0.107 has no such ScalarType");
        }
    }
}
