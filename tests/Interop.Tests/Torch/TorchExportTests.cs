using Interop.Diagnostics;
using Interop.Errors;
using Interop.Torch;
using static Interop.Tests.Torch.TorchTestPython;

namespace Interop.Tests.Torch;

[TestFixture]
[Category("numpy")]
[Category("torch")]
public class TorchExportTests
{
    [Test]
    public void Cpu_contiguous_tensor_is_zero_copy_all_the_way_to_a_dotnet_span()
    {
        using var tensor = TorchTensor.Evaluate("torch.arange(12, dtype=torch.float32).reshape(3, 4)");
        using var array = tensor.Numpy();
        using var view = array.ViewReadOnly<float>();
        Assert.That(view.Address, Is.EqualTo(tensor.DataPointer), "the span's address is the tensor's storage");
        Exec("t[2, 3] = 1000", ("t", tensor.PyObject));
        Assert.That(view.AsReadOnlySpan()[11], Is.EqualTo(1000), "a later write to the tensor is seen through the span");
    }

    [Test]
    public void Non_contiguous_cpu_tensor_is_exported_strided_without_a_copy()
    {
        using var tensor = TorchTensor.Evaluate("torch.arange(12, dtype=torch.float64).reshape(3, 4).t()");
        using var array = tensor.Numpy();
        Assert.That(array.Address, Is.EqualTo(tensor.DataPointer));
        Assert.That(array.ToArray<double>(), Is.EqualTo(Eval<double[]>("t.contiguous().flatten().tolist()", ("t", tensor.PyObject))));
    }

    [Test]
    public void Requires_grad_is_detached_by_default_still_sharing_memory()
    {
        using var tensor = TorchTensor.Evaluate("torch.ones(3, requires_grad=True)");
        Assert.That(tensor.RequiresGrad);
        using var array = tensor.Numpy();
        Assert.That(array.Address, Is.EqualTo(tensor.DataPointer));
        Assert.That(array.ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 1 }));
    }

    [Test]
    public void Requires_grad_with_detach_off_is_a_typed_error()
    {
        using var tensor = TorchTensor.Evaluate("torch.ones(3, requires_grad=True) * 2");
        var e = Assert.Throws<TensorRequiresGradException>(() => tensor.Numpy(new ExportOptions { Detach = false }))!;
        Assert.That(e.Message, Does.Contain("detach"));
        Assert.That(((PythonErrorException)e.InnerException!).PythonType, Is.EqualTo("interop_helpers.torch_export.RequiresGradError"));
    }

    [Test]
    public void Bfloat16_is_refused_by_default_and_upcast_to_float32_on_request()
    {
        using var tensor = TorchTensor.Evaluate("torch.tensor([1.5, -2.25, 3.0e38], dtype=torch.bfloat16)");
        var e = Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => tensor.Numpy())!;
        Assert.That(e.Message, Does.Contain("bfloat16").And.Contain("Upcast"));
        using var array = tensor.Numpy(new ExportOptions { Upcast = true });
        Assert.That(array.DTypeName, Is.EqualTo("float32"));
        Assert.That(array.ToArray<float>(), Is.EqualTo(Eval<float[]>("t.float().tolist()", ("t", tensor.PyObject))));
    }

    [Test]
    public void Float8_upcasts_on_torch_2_and_does_not_exist_on_torch_1()
    {
        if (TorchMajor < 2)
            Assert.Ignore("PyTorch 1.13 has no float8 dtypes (they arrived in 2.1); pytest covers float8 on 2.x too");
        using var tensor = TorchTensor.Evaluate("torch.tensor([0.5, -1.0, 2.0]).to(torch.float8_e4m3fn)");
        Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => tensor.Numpy());
        using var array = tensor.Numpy(new ExportOptions { Upcast = true });
        Assert.That(array.ToArray<float>(), Is.EqualTo(new float[] { 0.5f, -1, 2 }));
    }

    [Test]
    public void Conjugate_and_negative_views_are_resolved()
    {
        using var conj = TorchTensor.Evaluate("torch.tensor([1+2j, 3-4j], dtype=torch.complex128).conj()");
        using var conjArray = conj.Numpy();
        Assert.That(conjArray.ToArray<System.Numerics.Complex>(), Is.EqualTo(new System.Numerics.Complex[] { new(1, -2), new(3, 4) }));
        using var neg = TorchTensor.Evaluate("torch.tensor([1+2j, 3-4j], dtype=torch.complex128).conj().imag");
        using var negArray = neg.Numpy();
        Assert.That(negArray.ToArray<double>(), Is.EqualTo(new double[] { -2, 4 }));
    }

    [TestCase("torch.eye(3).to_sparse()", "to_dense")]
    [TestCase("torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)", "dequantize")]
    public void Sparse_and_quantized_tensors_are_refused_naming_the_fix(string expression, string fix)
    {
        using var tensor = TorchTensor.Evaluate(expression);
        var e = Assert.Throws<TensorLayoutNotSupportedException>(() => tensor.Numpy())!;
        Assert.That(e.Message, Does.Contain(fix));
    }

    [Test]
    public void Meta_tensor_is_a_clear_device_error_not_a_crash()
    {
        using var tensor = TorchTensor.Evaluate("torch.empty(2, 3, device='meta')");
        var e = Assert.Throws<TensorDeviceNotSupportedException>(() => tensor.Numpy())!;
        Assert.That(e.Message, Does.Contain("meta"));
        Assert.That(e, Is.InstanceOf<TensorExportException>());
    }

    [Test]
    public void Prepare_returns_the_same_tensor_when_nothing_needs_to_change()
    {
        using var tensor = TorchTensor.Evaluate("torch.ones(4)");
        using var prepared = tensor.Prepare();
        Assert.That(Eval<bool>("a is b", ("a", tensor.PyObject), ("b", prepared.PyObject)));
    }

    [Test]
    public void Export_releases_every_buffer()
    {
        var before = LiveObjects.PythonBuffers;
        for (var i = 0; i < 200; i++)
        {
            using var tensor = TorchTensor.Evaluate("torch.ones(8)");
            using var array = tensor.Numpy();
            using var view = array.ViewReadOnly<float>();
            Assert.That(view.AsReadOnlySpan()[7], Is.EqualTo(1));
        }
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
    }
}
