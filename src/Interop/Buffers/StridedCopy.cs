// Design notes: the one gather/scatter loop for strided memory. Every copying conversion (NumPy -> .NET
// and .NET -> NumPy) ends here: a memcpy when both sides are C-contiguous in native byte order, otherwise
// an odometer over the outer dimensions with the innermost dimension as a tight loop. Reads and writes are
// unaligned-safe and byte-swap per component (complex numbers swap each half separately).
using System.Runtime.CompilerServices;

namespace Interop.Buffers;

internal static unsafe class StridedCopy
{
    /// <summary>
    /// Copies elements of <paramref name="itemSize"/> bytes from a strided source to a C-contiguous destination,
    /// in C (row-major) order, swapping each <paramref name="swapUnit"/>-byte component when it is greater than 1.
    /// </summary>
    public static void Gather(byte* source, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, int swapUnit, byte* destination)
    {
        var count = Layout.ElementCount(shape);
        if (count == 0)
            return;
        if (swapUnit <= 1 && Layout.IsCContiguous(shape, strides, itemSize))
        {
            Buffer.MemoryCopy(source, destination, count * itemSize, count * itemSize);
            return;
        }
        Walk(source, shape, strides, itemSize, (src, dst) => CopyElement(src, dst, itemSize, swapUnit), destination);
    }

    /// <summary>The inverse of <see cref="Gather"/>: C-contiguous source into a strided destination.</summary>
    public static void Scatter(byte* source, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, int swapUnit, byte* destination)
    {
        var count = Layout.ElementCount(shape);
        if (count == 0)
            return;
        if (swapUnit <= 1 && Layout.IsCContiguous(shape, strides, itemSize))
        {
            Buffer.MemoryCopy(source, destination, count * itemSize, count * itemSize);
            return;
        }
        Walk(destination, shape, strides, itemSize, (strided, contiguous) => CopyElement(contiguous, strided, itemSize, swapUnit), source);
    }

    private delegate void ElementAction(byte* strided, byte* contiguous);

    private static void Walk(byte* strided, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, ElementAction action, byte* contiguous)
    {
        var ndim = shape.Length;
        if (ndim == 0)
        {
            action(strided, contiguous);
            return;
        }
        Span<nint> index = stackalloc nint[ndim];
        var inner = shape[ndim - 1];
        var innerStride = strides[ndim - 1];
        var outer = Layout.ElementCount(shape[..^1]);
        for (nint o = 0; o < outer; o++)
        {
            nint offset = 0;
            for (var d = 0; d < ndim - 1; d++)
                offset += index[d] * strides[d];
            var row = strided + offset;
            for (nint i = 0; i < inner; i++)
            {
                action(row + i * innerStride, contiguous);
                contiguous += itemSize;
            }
            for (var d = ndim - 2; d >= 0; d--)
            {
                if (++index[d] < shape[d])
                    break;
                index[d] = 0;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyElement(byte* from, byte* to, int itemSize, int swapUnit)
    {
        if (swapUnit <= 1)
        {
            switch (itemSize)
            {
                case 1: *to = *from; return;
                case 2: Unsafe.WriteUnaligned(to, Unsafe.ReadUnaligned<ushort>(from)); return;
                case 4: Unsafe.WriteUnaligned(to, Unsafe.ReadUnaligned<uint>(from)); return;
                case 8: Unsafe.WriteUnaligned(to, Unsafe.ReadUnaligned<ulong>(from)); return;
                default: Buffer.MemoryCopy(from, to, itemSize, itemSize); return;
            }
        }
        for (var c = 0; c < itemSize; c += swapUnit)
            for (var b = 0; b < swapUnit; b++)
                to[c + b] = from[c + swapUnit - 1 - b];
    }
}
