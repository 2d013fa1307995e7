// Design notes: shape and stride arithmetic shared by every view and copy. Strides are in bytes, as in
// the buffer protocol and NumPy; a dimension of length 1 may carry any stride; a zero-size array is
// contiguous in every sense (NumPy's rules, numpy/_core/src/multiarray/flagsobject.c).
namespace Interop.Buffers;

internal static class Layout
{
    public static void CContiguousStrides(ReadOnlySpan<nint> shape, nint itemSize, Span<nint> strides)
    {
        var stride = itemSize;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= Math.Max(shape[i], 1);
        }
    }

    /// <summary>C-order strides (in units of <paramref name="itemSize"/>: bytes, or 1 for element strides) of a 64-bit shape.</summary>
    public static long[] CContiguousStrides(ReadOnlySpan<long> shape, long itemSize)
    {
        var strides = new long[shape.Length];
        var stride = itemSize;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= Math.Max(shape[i], 1);
        }
        return strides;
    }

    public static nint ElementCount(ReadOnlySpan<nint> shape)
    {
        nint n = 1;
        foreach (var d in shape)
            n = checked(n * d);
        return n;
    }

    /// <summary>The element count of a shape given as 64-bit dimensions (<see cref="OverflowException"/> past 64 bits).</summary>
    public static long ElementCount(ReadOnlySpan<long> shape)
    {
        long n = 1;
        foreach (var d in shape)
            n = checked(n * d);
        return n;
    }

    /// <summary>
    /// Checks that <paramref name="shape"/> has no negative dimension and holds exactly <paramref name="count"/>
    /// elements (the data's length) before any memory is touched; returns the count.
    /// </summary>
    public static long CheckShape(ReadOnlySpan<long> shape, long count)
    {
        long product = 1;
        foreach (var d in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
            product = checked(product * d);
        }
        if (product != count)
            throw new ArgumentException($"Shape ({string.Join(", ", shape.ToArray())}) holds {product} elements, but the data has {count}.", nameof(shape));
        return product;
    }

    public static bool IsCContiguous(ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, nint itemSize)
    {
        if (ElementCount(shape) == 0)
            return true;
        var expected = itemSize;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] == 1)
                continue;
            if (strides[i] != expected)
                return false;
            expected *= shape[i];
        }
        return true;
    }

    public static bool IsFContiguous(ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, nint itemSize)
    {
        if (ElementCount(shape) == 0)
            return true;
        var expected = itemSize;
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 1)
                continue;
            if (strides[i] != expected)
                return false;
            expected *= shape[i];
        }
        return true;
    }

    /// <summary>The lowest and one-past-highest byte offsets touched, relative to element [0, ...]; (0, 0) when empty.</summary>
    public static (nint Low, nint High) ByteExtent(ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, nint itemSize)
    {
        if (ElementCount(shape) == 0)
            return (0, 0);
        nint low = 0, high = 0;
        for (var i = 0; i < shape.Length; i++)
        {
            var reach = checked((shape[i] - 1) * strides[i]);
            if (reach < 0) low += reach; else high += reach;
        }
        return (low, high + itemSize);
    }
}
