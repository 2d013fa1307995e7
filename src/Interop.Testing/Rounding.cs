// Design notes: PyTorch computes float16 and bfloat16 element-wise ops in float ("opmath") and rounds each op's
// result to the tensor's dtype; float32 ops are single-precision IEEE. These helpers reproduce that rounding so that
// the .NET verdicts and statistics are bit-for-bit PyTorch's (see TensorComparer).
namespace Interop.Testing;

/// <summary>Rounding to PyTorch's floating dtypes.</summary>
internal static class Rounding
{
    /// <summary>The nearest bfloat16 (round-half-even, as c10::BFloat16 converts a float), as a float.</summary>
    public static float ToBFloat16(float value)
    {
        if (float.IsNaN(value))
            return value;
        var bits = BitConverter.SingleToUInt32Bits(value);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }

    /// <summary>A bfloat16 from its 16 bits, as a float (exact).</summary>
    public static float FromBFloat16Bits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>The nearest float16 as a float (float to half rounds once, as c10::Half does).</summary>
    public static float ToHalf(float value) => (float)(Half)value;

    /// <summary>Rounds a float result to the precision of <paramref name="kind"/>.</summary>
    public static float To(FloatKind kind, float value) => kind switch
    {
        FloatKind.Float16 => ToHalf(value),
        FloatKind.BFloat16 => ToBFloat16(value),
        _ => value,
    };

    /// <summary>
    /// A double converted to the dtype the way a tensor cast does it: float32 rounds once; float16/bfloat16 go through
    /// float first (c10's constructors take a float).
    /// </summary>
    public static double Convert(FloatKind kind, double value) => kind switch
    {
        FloatKind.Float64 => value,
        FloatKind.Float32 => (float)value,
        _ => To(kind, (float)value),
    };
}

/// <summary>The floating formats PyTorch computes in.</summary>
internal enum FloatKind
{
    Float16,
    BFloat16,
    Float32,
    Float64,
}
