using CsCheck;
using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>
/// Property tests: NumPy → TorchSharp → NumPy and TorchSharp → NumPy → TorchSharp are bit-exact (random bytes, NaN payloads
/// included) for every dtype both sides have, random shapes (0-d and zero-size included), strided and reversed layouts,
/// and every combination of share and copy.
/// </summary>
[TestFixture]
[Category("torchsharp")]
[Category("numpy")]
public class RoundTripPropertyTests : TorchSharpFixture
{
    private static readonly DType[] s_dtypes = DType.All.Where(d => d.NumPyName is not null && d.TorchSharpScalarType is not null).ToArray();

    // NumPy layouts; those with negative strides cannot be shared (libtorch has none) and must be refused, then copied.
    private static readonly (string Expression, bool Negative)[] s_numPyLayouts =
    [
        ("a", false), ("a.T", false), ("a[::2]", false), ("a[..., 1:]", false), ("np.asfortranarray(a)", false),
        ("a[::-1]", true), ("a[..., ::-2]", true),
    ];

    private static readonly Gen<(int DType, int[] Shape, int Layout, bool ShareThere, bool ShareBack, int Seed)> s_cases =
        from dtype in Gen.Int[0, s_dtypes.Length - 1]
        from shape in Gen.Int[0, 4].Array[0, 3]
        from layout in Gen.Int[0, s_numPyLayouts.Length - 1]
        from there in Gen.Bool
        from back in Gen.Bool
        from seed in Gen.Int
        select (dtype, shape, layout, there, back, seed);

    [Test]
    public void NumPy_to_TorchSharp_to_NumPy_is_bit_exact()
    {
        s_cases.Sample(c =>
        {
            var dtype = s_dtypes[c.DType];
            var (layout, negative) = s_numPyLayouts[c.Layout];
            var shape = string.Join(", ", c.Shape) + (c.Shape.Length == 1 ? "," : "");
            var n = c.Shape.Aggregate(1, (x, y) => x * y);
            var mask = dtype == DType.Bool ? " % 2" : "";
            using var a = NDArray.Evaluate(
                $"(lambda a: a if a.ndim == 0 else {layout})(" +
                $"(np.random.default_rng({c.Seed & 0x7fffffff}).integers(0, 256, {n * dtype.ItemSize}, dtype=np.uint8){mask}).view(np.{dtype.NumPyName}).reshape(({shape})))");
            var share = c.ShareThere;
            var reversed = a.Shape.Zip(a.Strides).Any(d => d.First > 1 && d.Second < 0) && a.Shape.All(d => d > 0);
            Assert.That(!reversed || negative, Is.True, "only the reversing layouts have negative strides");
            if (share && reversed)
            {
                Assert.Throws<LayoutException>(() => a.AsTorchSharp(), "negative strides cannot be shared");
                share = false;
            }
            using var t = share ? a.AsTorchSharp() : a.CopyToTorchSharp();
            using var back = c.ShareBack ? t.AsNumPy() : t.ToNumPy();
            Assert.That(NumPyCheck.SameArray(a, back), Is.True, $"{dtype} {layout} shape ({shape}) share={share}/{c.ShareBack}");
        }, iter: 300);
    }

    [Test]
    public void TorchSharp_to_NumPy_to_TorchSharp_is_bit_exact()
    {
        s_cases.Sample(c =>
        {
            var dtype = s_dtypes[c.DType];
            var shape = c.Shape.Select(d => (long)d).ToArray();
            using var original = torch.empty(shape, TorchSharpTensors.ScalarTypeOf(dtype));
            if (original.numel() > 0)
            {
                var bytes = original.bytes;
                new Random(c.Seed).NextBytes(bytes);
                if (dtype == DType.Bool)
                    for (var i = 0; i < bytes.Length; i++)
                        bytes[i] &= 1;
            }
            // TorchSharp layouts: as is, all dimensions reversed (transpose), every second row, a narrowed last dimension.
            using var t = (c.Layout % 4, shape.Length) switch
            {
                (_, 0) or (0, _) => original.alias(),
                (1, _) => original.permute(Enumerable.Range(0, shape.Length).Reverse().Select(i => (long)i).ToArray()),
                (2, _) => original[torch.TensorIndex.Slice(null, null, 2)],
                _ => original.narrow(-1, Math.Min(1, shape[^1]), Math.Max(0, shape[^1] - 1)),
            };
            using var a = c.ShareThere ? t.AsNumPy() : t.ToNumPy();
            using var back = c.ShareBack ? a.AsTorchSharp() : a.CopyToTorchSharp();
            Assert.Multiple(() =>
            {
                Assert.That(back.dtype, Is.EqualTo(t.dtype));
                Assert.That(back.shape, Is.EqualTo(t.shape));
                if (t.numel() > 0)
                {
                    using var expected = t.contiguous();
                    using var actual = back.contiguous();
                    Assert.That(actual.bytes.ToArray(), Is.EqualTo(expected.bytes.ToArray()), $"{dtype} layout {c.Layout % 4} share={c.ShareThere}/{c.ShareBack}");
                }
            });
        }, iter: 300);
    }
}
