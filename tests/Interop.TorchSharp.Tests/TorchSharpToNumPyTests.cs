using Interop.Diagnostics;
using Interop.NumPy;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>TorchSharp → NumPy: shared memory with strides, copies, grad and dtype policy, lifetime.</summary>
[TestFixture]
[Category("torchsharp")]
[Category("numpy")]
public class TorchSharpToNumPyTests : TorchSharpFixture
{
    [Test]
    public void A_cpu_tensor_is_shared_and_writes_are_seen_both_ways()
    {
        using var t = torch.arange(6, dtype: torch.ScalarType.Float32).reshape(2, 3);
        using var a = t.AsNumPy();
        using (var view = a.View<float>())
        {
            Assert.That(view.AsSpan().ToArray(), Is.EqualTo(new float[] { 0, 1, 2, 3, 4, 5 }));
            view.AsSpan()[4] = 40;
        }
        Assert.That(t[1, 1].item<float>(), Is.EqualTo(40f), "NumPy write seen by TorchSharp");
        t[0, 0] = torch.tensor(-1f);
        Assert.That(a.ToArray<float>()[0], Is.EqualTo(-1f), "TorchSharp write seen by NumPy");
    }

    [Test]
    public void Non_contiguous_tensors_export_with_their_strides()
    {
        using var t = torch.arange(12, dtype: torch.ScalarType.Int64).reshape(3, 4);
        using var transposed = t.t();
        using var sliced = t[torch.TensorIndex.Ellipsis, torch.TensorIndex.Slice(1, null, 2)];
        using var a = transposed.AsNumPy();
        using var b = sliced.AsNumPy();
        Assert.Multiple(() =>
        {
            Assert.That(a.Strides, Is.EqualTo(new long[] { 8, 32 }));
            Assert.That(a.ToArray<long>(), Is.EqualTo(new long[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }));
            Assert.That(b.Shape, Is.EqualTo(new long[] { 3, 2 }));
            Assert.That(b.ToArray<long>(), Is.EqualTo(new long[] { 1, 3, 5, 7, 9, 11 }));
        });
    }

    [Test]
    public void The_copy_is_c_contiguous_and_independent()
    {
        using var t = torch.arange(6, dtype: torch.ScalarType.Int32).reshape(2, 3).t();
        using var a = t.ToNumPy();
        t.fill_(0);
        Assert.Multiple(() =>
        {
            Assert.That(a.Strides, Is.EqualTo(new long[] { 8, 4 }));
            Assert.That(a.ToArray<int>(), Is.EqualTo(new[] { 0, 3, 1, 4, 2, 5 }));
        });
    }

    [Test]
    public void The_array_keeps_the_tensor_alive_after_dispose_and_dispose_scopes_until_numpy_drops_it()
    {
        Settle();
        var exports = LiveObjects.ExportedToPython;
        NDArray a;
        using (torch.NewDisposeScope())
        {
            var t = torch.arange(1000, dtype: torch.ScalarType.Float64);
            a = t.AsNumPy();
            t.Dispose();
        }
        using (torch.NewDisposeScope())
        {
            using var garbage = torch.full(1000, 123.0, dtype: torch.ScalarType.Float64); // would reuse freed memory
            Assert.That(a.ToArray<double>()[999], Is.EqualTo(999.0));
        }
        Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(exports + 1));
        a.Dispose();
        Assert.That(Eventually(() => LiveObjects.ExportedToPython <= exports), Is.True, "owner released when NumPy dropped the array");
    }

    [Test]
    public void Tensors_that_require_grad_are_detached_by_default_or_refused_on_request()
    {
        using var t = torch.ones(3, requires_grad: true);
        using var a = t.AsNumPy();
        Assert.That(a.ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 1 }));
        Assert.That(t.requires_grad, Is.True, "the caller's tensor is untouched");
        var options = new TorchSharpExportOptions { Detach = false };
        Assert.Throws<TorchSharpRequiresGradException>(() => t.AsNumPy(options));
        Assert.Throws<TorchSharpRequiresGradException>(() => t.ToNumPy(options));
    }

    [Test]
    public void Bfloat16_is_refused_unless_upcast()
    {
        using var t = torch.tensor(new float[] { 1.5f, -2 }).to(torch.ScalarType.BFloat16);
        var e = Assert.Throws<TorchSharpDTypeException>(() => t.AsNumPy());
        Assert.That(e!.Message, Does.Contain("bfloat16").And.Contain("Upcast"));
        using var a = t.AsNumPy(new TorchSharpExportOptions { Upcast = true });
        Assert.That(a.ToArray<float>(), Is.EqualTo(new[] { 1.5f, -2f }));
    }

    [Test]
    public void Empty_and_zero_d_tensors_export()
    {
        using var empty = torch.zeros(2, 0, dtype: torch.ScalarType.Int8);
        using var scalar = torch.tensor(3.25);
        using var a = empty.AsNumPy();
        using var b = scalar.AsNumPy();
        using var c = scalar.ToNumPy();
        Assert.Multiple(() =>
        {
            Assert.That(a.Shape, Is.EqualTo(new long[] { 2, 0 }));
            Assert.That(a.DType, Is.EqualTo(Interop.DTypes.DType.Int8));
            Assert.That(b.Shape, Is.Empty);
            Assert.That(b.ToArray<double>(), Is.EqualTo(new[] { 3.25 }));
            Assert.That(c.ToArray<double>(), Is.EqualTo(new[] { 3.25 }));
        });
    }

    [Test]
    public void Lazy_conjugate_and_negative_views_export_their_values_not_the_raw_memory()
    {
        // libtorch's conj() of a complex tensor is a lazy view (a conj bit over the same memory), and the imaginary part
        // of such a view is a lazy negative view: the raw memory does not hold the values they stand for.
        using var z = torch.complex(torch.tensor(new float[] { 1, 2 }), torch.tensor(new float[] { 3, -4 }));
        using var conj = z.conj();
        using var imag = conj.imag;
        Assert.That(conj.is_conj(), Is.True, "precondition: a lazy conjugate view");
        using var shared = conj.AsNumPy();
        using var copied = conj.ToNumPy();
        using var sharedImag = imag.AsNumPy();
        using var copiedImag = imag.ToNumPy();
        var expected = new[] { new System.Numerics.Complex(1, -3), new System.Numerics.Complex(2, 4) };
        Assert.Multiple(() =>
        {
            Assert.That(Complex(copied), Is.EqualTo(expected), "the copy");
            Assert.That(Complex(shared), Is.EqualTo(expected), "the export of a lazy conjugate");
            Assert.That(copiedImag.ToArray<float>(), Is.EqualTo(new float[] { -3, 4 }), "the copy");
            Assert.That(sharedImag.ToArray<float>(), Is.EqualTo(new float[] { -3, 4 }), "the export of a lazy negative view");
        });
        Assert.That(conj.is_conj(), Is.True, "the caller's tensor is left as it was");
    }

    private static System.Numerics.Complex[] Complex(NDArray a) =>
        a.ToArray<Interop.DTypes.ComplexFloat>().Select(c => new System.Numerics.Complex(c.Real, c.Imaginary)).ToArray();

    [Test]
    public void Meta_sparse_and_quantized_tensors_are_refused_with_typed_errors_naming_the_fix()
    {
        // The PyTorch side's policy: no data (meta) and no strided memory (sparse, quantized) give typed errors, not libtorch's.
        using var meta = torch.empty(3, device: torch.META);
        using var sparse = torch.ones(3).to_sparse();
        using var quantized = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.ScalarType.QUInt8);
        foreach (var export in new Func<torch.Tensor, NDArray>[] { t => t.AsNumPy(), t => t.ToNumPy() })
        {
            Assert.That(Assert.Throws<Interop.Errors.TensorDeviceNotSupportedException>(() => export(meta).Dispose())!.Message, Does.Contain("meta").And.Contain("Fix"));
            Assert.That(Assert.Throws<Interop.Errors.TensorLayoutNotSupportedException>(() => export(sparse).Dispose())!.Message, Does.Contain("to_dense"));
            Assert.That(Assert.Throws<TorchSharpDTypeException>(() => export(quantized).Dispose())!.Message, Does.Contain("dequantize"));
        }
    }
}
