using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using Interop.Torch;
using static Interop.Tests.Torch.TorchTestPython;

namespace Interop.Tests.Torch;

/// <summary>TorchTensor and NDArray describe themselves in their library's own terms; Python is the oracle.</summary>
[TestFixture]
[Category("numpy")]
[Category("torch")]
public class TensorDescriptionTests
{
    private static readonly string[] s_tensors =
    [
        "torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)",
        "torch.arange(24, dtype=torch.float64).reshape(2, 3, 4).transpose(0, 2)[1:, ::2]",
        "torch.ones(5, dtype=torch.int16, requires_grad=False)[3:]",
        "torch.tensor(2.5, dtype=torch.float32, requires_grad=True)",
        "torch.zeros(0, 3, dtype=torch.bool)",
        "torch.ones(2, 2, dtype=torch.bfloat16).t()",
    ];

    [TestCaseSource(nameof(s_tensors))]
    public void A_tensor_reports_what_PyTorch_reports(string expression)
    {
        using var t = TorchTensor.Evaluate(expression);
        var o = ("t", t.PyObject);
        Assert.Multiple(() =>
        {
            Assert.That(t.Shape, Is.EqualTo(Eval<long[]>("list(t.shape)", o)));
            Assert.That(t.Strides, Is.EqualTo(Eval<long[]>("list(t.stride())", o)), "strides in elements, as PyTorch reports");
            Assert.That(t.StorageOffset, Is.EqualTo(Eval<long>("t.storage_offset()", o)));
            Assert.That(t.Rank, Is.EqualTo(Eval<int>("t.dim()", o)));
            Assert.That(t.ElementCount, Is.EqualTo(Eval<long>("t.numel()", o)));
            Assert.That(t.DType.TorchName, Is.EqualTo(Eval<string>("str(t.dtype)", o)));
            Assert.That(t.DTypeName, Is.EqualTo(Eval<string>("str(t.dtype)", o)));
            Assert.That(t.Device, Is.EqualTo("cpu"));
            Assert.That(t.RequiresGrad, Is.EqualTo(Eval<bool>("t.requires_grad", o)));
            Assert.That(t.IsContiguous, Is.EqualTo(Eval<bool>("t.is_contiguous()", o)));
            Assert.That(t.Layout, Is.EqualTo("torch.strided"));
        });
    }

    [Test]
    public void A_tensor_of_a_dtype_outside_the_table_names_it()
    {
        using var q = TorchTensor.Evaluate("torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)");
        var e = Assert.Throws<UnsupportedDTypeException>(() => _ = q.DType)!;
        Assert.Multiple(() =>
        {
            Assert.That(q.DTypeName, Is.EqualTo("torch.qint8"));
            Assert.That(e.Message, Does.Contain("torch.qint8"));
        });
    }

    [Test]
    public void A_meta_tensor_reports_its_device()
    {
        using var t = TorchTensor.Evaluate("torch.empty(2, 3, device='meta')");
        Assert.Multiple(() =>
        {
            Assert.That(t.Device, Is.EqualTo("meta"));
            Assert.That(t.Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(t.DType, Is.SameAs(DType.Float32));
        });
    }

    // NumPy's arr.strides where the exported buffer differs: zero-size arrays and dimensions of length 1.
    private static readonly string[] s_arrays =
    [
        "np.empty((0, 3), np.float32)",
        "np.zeros((3, 0), np.float32)",
        "np.empty((3, 4), np.float32)[:0]",
        "np.broadcast_to(np.float32(1), (0, 3))",
        "np.empty((2, 3), np.float32).T[:, :0]",
        "np.arange(10)[::3][:1]",
        "np.arange(12.0).reshape(3, 4)[:, ::-2]",
    ];

    [TestCaseSource(nameof(s_arrays))]
    public void NDArray_strides_are_numpys(string expression)
    {
        using var a = NDArray.Evaluate(expression);
        Assert.That(a.Strides, Is.EqualTo(Eval<long[]>("list(a.strides)", ("a", a.PyObject))));
    }
}
