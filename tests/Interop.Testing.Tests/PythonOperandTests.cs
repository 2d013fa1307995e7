// NumPy arrays and PyTorch tensors of this process's Python as operands (strides and dtypes as Python sees them).
using Interop.NumPy;
using Interop.Torch;
using Interop.TorchSharp;

namespace Interop.Testing.Tests;

[TestFixture]
[Category("numpy")]
public class PythonOperandTests
{
    [Test]
    public void A_strided_NumPy_array_is_read_with_its_values_and_strides()
    {
        using var a = NDArray.Evaluate("np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]");
        var operand = TensorOperand.FromNDArray(a);
        Assert.That(operand.Shape, Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(operand.Strides, Is.EqualTo(new long[] { 4, 2 }));
        Assert.That(a, TensorIs.CloseTo(new double[,] { { 0, 2 }, { 4, 6 }, { 8, 10 } }));
        var e = Assert.Throws<AssertionException>(() => TensorAssert.Close(a, new double[,] { { 0, 2 }, { 4, 6 }, { 8, 11 } }))!;
        Assert.That(e.Message, Does.Contain("Mismatched elements: 1 / 6 (16.7%)").And.Contain("at index (2, 1)"));
    }

    [Test]
    [Category("torch")]
    public void A_PyTorch_tensor_in_this_process_is_an_operand_bfloat16_included()
    {
        // One libtorch per process: where TorchSharp can run, this test process hosts it (the parity suite), so
        // Python's torch may only run in workers here.
        if (TorchSharpSupport.IsAvailable)
            Assert.Ignore("This test process hosts TorchSharp here; Python torch runs only in worker processes (one libtorch per process).");
        using var t = TorchTensor.Evaluate("torch.arange(6, dtype=torch.bfloat16).reshape(2, 3).t()");
        var operand = TensorOperand.FromTorchTensor(t);
        Assert.That(operand.DType, Is.EqualTo(Interop.DTypes.DType.BFloat16));
        Assert.That(operand.Strides, Is.EqualTo(new long[] { 1, 3 }));
        Assert.That(t, TensorIs.CloseTo(new float[,] { { 0, 3 }, { 1, 4 }, { 2, 5 } }).IgnoringDtype());
        Assert.That(TensorAssert.Compare(t, new float[,] { { 0, 3 }, { 1, 4 }, { 2, 5 } }).FailedCheck, Is.EqualTo(CloseCheck.DType));
    }
}
