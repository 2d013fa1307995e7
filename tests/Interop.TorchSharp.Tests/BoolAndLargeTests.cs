using Interop.Embedding;
using Interop.Errors;
using Interop.Isolated;
using Interop.NumPy;
using Interop.Sessions;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>
/// The TorchSharp mapping's side of three rules: copies give canonical bools (a NumPy bool byte may hold 2 or 255 behind a
/// reinterpreting view), read-only memory is never shared, and arrays of more than 2^31 elements map without overflow.
/// </summary>
[TestFixture]
[Category("torchsharp")]
[Category("numpy")]
[NonParallelizable]
public class BoolAndLargeTests : TorchSharpFixture
{
    private static byte[] BytesOf(torch.Tensor boolTensor)
    {
        using var contiguous = boolTensor.contiguous();
        var bytes = new byte[contiguous.numel()];
        System.Runtime.InteropServices.Marshal.Copy(contiguous.DataAddress(), bytes, 0, bytes.Length); // the bool bytes as they are
        return bytes;
    }

    [TestCase("np.array([0, 1, 2, 255], np.uint8).view(np.bool_)", new byte[] { 0, 1, 1, 1 })]
    [TestCase("np.array([[7, 0, 0], [255, 9, 0]], np.uint8).view(np.bool_).T[::-1]", new byte[] { 0, 0, 0, 9, 7, 255 })]
    public void Copy_mode_gives_canonical_bools(string expression, byte[] raw)
    {
        using var array = NDArray.Evaluate(expression);
        using var copy = array.CopyToTorchSharp();
        var expected = raw.Select(b => b != 0 ? (byte)1 : (byte)0).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(copy.dtype, Is.EqualTo(torch.ScalarType.Bool));
            Assert.That(BytesOf(copy), Is.EqualTo(expected));
            Assert.That(array.ToArray<bool>(), Is.EqualTo(expected.Select(b => b == 1).ToArray()));
        });
    }

    [Test]
    public void Share_mode_shows_the_bytes_as_they_are()
    {
        using var array = NDArray.Evaluate("np.array([0, 1, 2, 255], np.uint8).view(np.bool_)");
        using var shared = array.AsTorchSharp();
        Assert.That(BytesOf(shared), Is.EqualTo(new byte[] { 0, 1, 2, 255 }), "zero-copy views do not rewrite memory (docs/buffers.md)");
    }

    [Test]
    public void Isolated_bool_results_copy_canonical_into_TorchSharp()
    {
        using var session = PythonSession.Isolated(new WorkerOptions { Python = new PythonOptions { PythonExecutable = Environment.GetEnvironmentVariable("INTEROP_PYTHON") } });
        using var eval = session.Import("builtins").GetAttr("eval");
        using var value = eval.Call("__import__('numpy').array([0, 1, 2, 255], dtype='uint8').view('bool')");
        using var copy = value.ToTorchSharp(TorchSharpMemory.Copy);
        Assert.Multiple(() =>
        {
            Assert.That(BytesOf(copy), Is.EqualTo(new byte[] { 0, 1, 1, 1 }));
            Assert.That(value.ToArray<bool>(), Is.EqualTo(new[] { false, true, true, true }));
        });
    }

    [Test]
    public void Read_only_arrays_are_refused_by_share_and_copied_by_copy()
    {
        using var array = NDArray.Evaluate("np.frombuffer(bytes([1, 2]), np.uint8)");
        Assert.Throws<ReadOnlyBufferException>(() => array.AsTorchSharp());
        using var copy = array.CopyToTorchSharp();
        copy.fill_(9);
        Assert.That(array.ToArray<byte>(), Is.EqualTo(new byte[] { 1, 2 }), "the bytes object is untouched");
    }

    [Test]
    public void An_array_of_more_than_2_pow_31_elements_maps_both_ways()
    {
        // calloc'd by NumPy: only the touched pages cost memory. One such array, disposed at the end.
        const long count = (1L << 31) + 16;
        using var array = NDArray.Evaluate("(lambda a: (a.__setitem__(2**31 + 5, 7), a)[-1])(np.zeros(2**31 + 16, np.int8))");
        using (var shared = array.AsTorchSharp())
        {
            Assert.Multiple(() =>
            {
                Assert.That(shared.numel(), Is.EqualTo(count));
                Assert.That(shared[(1L << 31) + 5].item<sbyte>(), Is.EqualTo(7));
            });
            using var back = shared.AsNumPy();
            Assert.That(back.Shape, Is.EqualTo(new[] { count }));
        }
        using var strided = NDArray.Evaluate("np.broadcast_to(np.int8(3), (2**31 + 16,))");
        Assert.Throws<ReadOnlyBufferException>(() => strided.AsTorchSharp(), "a broadcast is read-only");
    }
}
