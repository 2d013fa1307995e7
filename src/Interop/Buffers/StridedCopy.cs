// Design notes: the one gather/scatter loop for strided memory. Every copying conversion (NumPy -> .NET
// and .NET -> NumPy) ends here: a memcpy when both sides are C-contiguous in native byte order, otherwise
// an odometer over the outer dimensions with the innermost dimension as a tight loop. Reads and writes are
// unaligned-safe and byte-swap per component (complex numbers swap each half separately).
// - Ranges: a copy may start at any element (C-order index) and cover any count, so arrays beyond what one
//   .NET span holds (2^31 - 1 elements) can be copied in chunks. Sizes and offsets are native ints throughout.
// - Booleans: NumPy's bool is one byte that NumPy itself only ever sets to 0 or 1, but reinterpreting views
//   (arr.view(np.bool_), np.frombuffer(..., np.bool_)) expose any byte. A .NET bool holding 2 is not equal to
//   true, so every bool copy writes canonical values (0 or 1, NumPy's truth: nonzero is True).
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Interop.Buffers;

internal static unsafe class StridedCopy
{
    /// <summary>
    /// Copies elements of <paramref name="itemSize"/> bytes from a strided source to a C-contiguous destination,
    /// in C (row-major) order, swapping each <paramref name="swapUnit"/>-byte component when it is greater than 1:
    /// the <paramref name="count"/> elements from C-order index <paramref name="start"/> on (all of them by default).
    /// <paramref name="booleans"/> writes canonical bools (0 or 1) for one-byte bool elements.
    /// </summary>
    public static void Gather(byte* source, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, int swapUnit, byte* destination,
                              bool booleans = false, nint start = 0, nint count = -1) =>
        Copy(source, shape, strides, itemSize, swapUnit, destination, booleans, start, count, gather: true);

    /// <summary>The inverse of <see cref="Gather"/>: C-contiguous source into a strided destination (all elements).</summary>
    public static void Scatter(byte* source, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, int swapUnit, byte* destination,
                               bool booleans = false) =>
        Copy(destination, shape, strides, itemSize, swapUnit, source, booleans, 0, -1, gather: false);

    /// <summary>Rewrites <paramref name="count"/> bool bytes at <paramref name="bytes"/> as 0 or 1 (nonzero is true).</summary>
    public static void CanonicalizeBooleans(byte* bytes, nint count)
    {
        // min(b, 1) over unsigned bytes is exactly (b != 0): vectorised by TensorPrimitives, in chunks a span can hold.
        while (count > 0)
        {
            var chunk = (int)Math.Min(count, 1 << 30);
            var span = new Span<byte>(bytes, chunk);
            TensorPrimitives.Min(span, (byte)1, span);
            bytes += chunk;
            count -= chunk;
        }
    }

    private static void Copy(byte* strided, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, int swapUnit, byte* contiguous,
                             bool booleans, nint start, nint count, bool gather)
    {
        var total = Layout.ElementCount(shape);
        if (count < 0)
            count = total - start;
        if (start < 0 || count < 0 || start > total - count)
            throw new ArgumentOutOfRangeException(nameof(start), $"Elements [{start}, {start} + {count}) are outside an array of {total}.");
        if (count == 0)
            return;
        booleans &= itemSize == 1;
        if (swapUnit <= 1 && Layout.IsCContiguous(shape, strides, itemSize))
        {
            var bytes = count * itemSize;
            var from = gather ? strided + start * itemSize : contiguous;
            var to = gather ? contiguous : strided + start * itemSize;
            Buffer.MemoryCopy(from, to, bytes, bytes);
            if (booleans)
                CanonicalizeBooleans(to, count);
            return;
        }
        Walk(strided, shape, strides, itemSize, swapUnit, contiguous, booleans, start, count, gather);
    }

    private static void Walk(byte* strided, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int itemSize, int swapUnit, byte* contiguous,
                             bool booleans, nint start, nint count, bool gather)
    {
        var ndim = shape.Length;
        if (ndim == 0)
        {
            CopyElement(gather ? strided : contiguous, gather ? contiguous : strided, itemSize, swapUnit, booleans);
            return;
        }
        // The C-order multi-index of element `start`.
        Span<nint> index = stackalloc nint[ndim];
        var rest = start;
        for (var d = ndim - 1; d >= 0; d--)
        {
            index[d] = rest % shape[d];
            rest /= shape[d];
        }
        var inner = shape[ndim - 1];
        var innerStride = strides[ndim - 1];
        while (count > 0)
        {
            nint offset = 0;
            for (var d = 0; d < ndim - 1; d++)
                offset += index[d] * strides[d];
            var first = index[ndim - 1];
            var n = Math.Min(inner - first, count);
            var row = strided + offset + first * innerStride;
            for (nint i = 0; i < n; i++)
            {
                var element = row + i * innerStride;
                CopyElement(gather ? element : contiguous, gather ? contiguous : element, itemSize, swapUnit, booleans);
                contiguous += itemSize;
            }
            count -= n;
            index[ndim - 1] = 0;
            for (var d = ndim - 2; d >= 0; d--)
            {
                if (++index[d] < shape[d])
                    break;
                index[d] = 0;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyElement(byte* from, byte* to, int itemSize, int swapUnit, bool booleans)
    {
        if (booleans)
        {
            *to = *from != 0 ? (byte)1 : (byte)0;
            return;
        }
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
