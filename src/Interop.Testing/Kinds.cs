using Interop.DTypes;

namespace Interop.Testing;

/// <summary>Dtype facts the comparison needs: float formats, integer wrapping and PyTorch's type promotion.</summary>
internal static class Kinds
{
    /// <summary>The float format of a float dtype, or of a complex dtype's components.</summary>
    public static FloatKind Float(DType dtype)
    {
        if (dtype == DType.Float16) return FloatKind.Float16;
        if (dtype == DType.BFloat16) return FloatKind.BFloat16;
        if (dtype == DType.Float32 || dtype == DType.Complex64) return FloatKind.Float32;
        if (dtype == DType.Float64 || dtype == DType.Complex128) return FloatKind.Float64;
        throw new ArgumentException($"{dtype} is not a float or complex dtype.", nameof(dtype));
    }

    /// <summary>An int64 result stored in <paramref name="dtype"/> (two's-complement wrap, as tensor arithmetic does).</summary>
    public static long Wrap(DType dtype, long value) => dtype.ItemSize switch
    {
        1 when dtype.Kind == DTypeKind.UnsignedInteger => (byte)value,
        1 => (sbyte)value,
        2 when dtype.Kind == DTypeKind.UnsignedInteger => (ushort)value,
        2 => (short)value,
        4 when dtype.Kind == DTypeKind.UnsignedInteger => (uint)value,
        4 => (int)value,
        _ => value,
    };

    /// <summary><c>torch.promote_types</c> for the table's dtypes.</summary>
    public static DType Promote(DType a, DType b)
    {
        if (a == b) return a;
        if (a == DType.Bool) return b;
        if (b == DType.Bool) return a;
        var ka = Category(a);
        var kb = Category(b);
        if (ka != kb)
        {
            // Different categories: the higher category wins; a complex result widens to hold a float operand.
            var (hi, lo) = ka > kb ? (a, b) : (b, a);
            if (hi.Kind == DTypeKind.Complex && lo.Kind == DTypeKind.Float)
                return lo == DType.Float64 ? DType.Complex128 : hi;
            return hi;
        }
        switch (a.Kind)
        {
            case DTypeKind.Float:
                if (a.ItemSize == b.ItemSize) return DType.Float32; // float16 with bfloat16
                return a.ItemSize > b.ItemSize ? a : b;
            case DTypeKind.Complex:
                return a.ItemSize > b.ItemSize ? a : b;
            default:
                if (a.Kind == b.Kind)
                    return a.ItemSize > b.ItemSize ? a : b;
                var (signed, unsigned) = a.Kind == DTypeKind.SignedInteger ? (a, b) : (b, a);
                if (signed.ItemSize > unsigned.ItemSize)
                    return signed;
                return unsigned.ItemSize switch { 1 => DType.Int16, 2 => DType.Int32, _ => DType.Int64 };
        }
    }

    private static int Category(DType d) => d.Kind switch
    {
        DTypeKind.Bool => 0,
        DTypeKind.SignedInteger or DTypeKind.UnsignedInteger => 1,
        DTypeKind.Float => 2,
        _ => 3,
    };
}
