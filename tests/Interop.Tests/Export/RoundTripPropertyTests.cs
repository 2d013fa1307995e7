using System.Runtime.InteropServices;
using CsCheck;
using Interop.DTypes;
using Interop.NumPy;

namespace Interop.Tests.Export;

/// <summary>.NET → NumPy → .NET, by copy and by sharing, for random dtypes and shapes (0-d and zero-size included).</summary>
[TestFixture]
[Category("numpy")]
public class RoundTripPropertyTests
{
    private static readonly DType[] s_dtypes = DType.All.Where(d => d.NumPyName is not null).ToArray();

    private static readonly Gen<(int DType, int[] Shape, byte[] Seed)> s_cases =
        from dtype in Gen.Int[0, s_dtypes.Length - 1]
        from shape in Gen.Int[0, 4].Array[0, 4]
        from seed in Gen.Byte.Array[8]
        select (dtype, shape, seed);

    [Test]
    public void Dotnet_to_numpy_to_dotnet_is_bit_exact_for_copies_and_shares()
    {
        var method = typeof(RoundTripPropertyTests).GetMethod(nameof(Check), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        s_cases.Sample(c =>
        {
            var dtype = s_dtypes[c.DType];
            method.MakeGenericMethod(dtype.ClrType!).Invoke(null, [dtype, c.Shape, BitConverter.ToInt32(c.Seed)]);
        }, iter: 400);
    }

    private static void Check<T>(DType dtype, int[] shape, int seed) where T : unmanaged
    {
        var count = shape.Aggregate(1, (a, b) => a * b);
        var bytes = new byte[count * dtype.ItemSize];
        new Random(seed).NextBytes(bytes);
        if (dtype == DType.Bool)
            for (var i = 0; i < bytes.Length; i++) bytes[i] &= 1;
        var data = MemoryMarshal.Cast<byte, T>(bytes).ToArray();
        var dims = shape.Select(d => (long)d).ToArray();

        using (var copy = NDArray.CopyFrom<T>(data, dims.Length == 0 ? [] : dims))
        {
            // CopyFrom with no shape means 1-d; 0-d arrays are covered by Empty + Assign below.
            var back = copy.ToArray<T>();
            Assert.That(MemoryMarshal.AsBytes(back.AsSpan()).ToArray(), Is.EqualTo(bytes), $"copy {dtype} {string.Join("x", shape)}");
        }
        using (var target = NDArray.Empty(dtype, dims))
        {
            // Assign writes into an existing array of any rank, 0-d included.
            target.Assign<T>(data);
            Assert.That(target.Shape, Is.EqualTo(dims));
            var back = target.ToArray<T>();
            Assert.That(MemoryMarshal.AsBytes(back.AsSpan()).ToArray(), Is.EqualTo(bytes), $"assign {dtype} {string.Join("x", shape)}");
        }
        using var shared = NDArray.Share(new Memory<T>(data), dims.Length == 0 ? [1] : dims);
        Assert.That(shared.Shape, Is.EqualTo(dims.Length == 0 ? new long[] { 1 } : dims));
        var again = shared.ToArray<T>();
        Assert.That(MemoryMarshal.AsBytes(again.AsSpan()).ToArray(), Is.EqualTo(bytes), $"share {dtype} {string.Join("x", shape)}");
    }
}
