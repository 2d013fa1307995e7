// Design notes: typed access to strided memory given as (address, shape, byte strides), shared by ArrayView
// (Python buffers) and PythonValue (tensor results of every session kind), so both apply the same rules:
// - Sizes are native ints. A span, Memory<T> or .NET array cannot hold more than 2^31 - 1 (Array.MaxLength for
//   arrays) elements; asking for one beyond that throws TooManyElementsException naming the count, the limit
//   and the ways out. Tensor spans take native-int lengths (their pointer constructor), so they work at any size.
// - Views need aligned memory; copies do not (StridedCopy reads unaligned).
// - Bool copies are canonical (StridedCopy); zero-copy bool views show the bytes as they are.
using System.Numerics.Tensors;
using Interop.Errors;

namespace Interop.Buffers;

internal static unsafe class ElementAccess<T> where T : unmanaged
{
    /// <summary>The most elements a span or <see cref="Memory{T}"/> holds.</summary>
    public const long SpanLimit = int.MaxValue;

    // The CLR's alignment of T (what NumPy calls dtype.alignment): 4 for ComplexFloat, not its size of 8.
    private static readonly int s_alignment = sizeof(AlignmentProbe) - sizeof(T);

    private static readonly bool s_isBool = typeof(T) == typeof(bool);

    private struct AlignmentProbe
    {
#pragma warning disable CS0649 // never assigned: only its layout matters
        public byte Before;
        public T Value;
#pragma warning restore CS0649
    }

    /// <summary><paramref name="count"/> as a span length, or <see cref="TooManyElementsException"/>.</summary>
    public static int SpanLength(long count, string operation) =>
        count <= SpanLimit ? (int)count : throw new TooManyElementsException(operation, count, SpanLimit, "a .NET span or Memory<T>");

    /// <summary><paramref name="count"/> as a .NET array length, or <see cref="TooManyElementsException"/>.</summary>
    public static int ArrayLength(long count, string operation) =>
        count <= Array.MaxLength ? (int)count : throw new TooManyElementsException(operation, count, Array.MaxLength, "a .NET array (Array.MaxLength)");

    /// <summary>Refuses an address that is not aligned for <typeparamref name="T"/> (views would perform misaligned access).</summary>
    public static void CheckAlignment(nint pointer, nint count)
    {
        // An empty array accesses nothing, so its address need not be aligned (NumPy's rule too: flags.aligned is True).
        if (count != 0 && pointer % s_alignment != 0)
            throw new LayoutException($"The data at 0x{pointer:x} is not aligned for {typeof(T).Name}; a view would perform misaligned access. " +
                                      "Fix: copy (CopyTo/ToArray handle misaligned data), or np.require(arr, requirements='A') in Python.");
    }

    /// <summary>
    /// Copies the <paramref name="destination"/>.Length elements from C-order index <paramref name="start"/> on, gathering
    /// strides and swapping bytes (<paramref name="swapUnit"/> &gt; 1); bools come out canonical (0 or 1).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the array.</exception>
    public static void CopyOut(nint pointer, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> strides, int swapUnit, Span<T> destination, long start)
    {
        var total = Layout.ElementCount(shape);
        if (start < 0 || start > total || destination.Length > total - start)
            throw new ArgumentOutOfRangeException(nameof(start), $"Elements [{start}, {start} + {destination.Length}) are outside the array's {total} elements. " +
                                                                 "Fix: start at 0 to total - 1 with a destination no longer than the elements left.");
        fixed (T* dst = destination)
            StridedCopy.Gather((byte*)pointer, shape, strides, sizeof(T), swapUnit, (byte*)dst, s_isBool, (nint)start, destination.Length);
    }

    /// <summary>A read-only tensor span over strided memory (any non-negative strides; native-int lengths).</summary>
    public static ReadOnlyTensorSpan<T> ReadOnlyTensorSpan(nint pointer, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> byteStrides)
    {
        var dataLength = TensorLayout(pointer, shape, byteStrides, out var lengths, out var strides);
        try
        {
            return new ReadOnlyTensorSpan<T>((T*)pointer, dataLength, lengths, strides);
        }
        catch (ArgumentException e)
        {
            throw InterleavedStrides(lengths, strides, e);
        }
    }

    /// <summary>A writable tensor span over strided memory; broadcast (zero-stride) layouts are refused.</summary>
    public static TensorSpan<T> TensorSpan(nint pointer, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> byteStrides)
    {
        // An empty array has no element to alias (NumPy exports np.zeros((3, 0)) with strides (0, 4)).
        var empty = Layout.ElementCount(shape) == 0;
        for (var i = 0; i < shape.Length && !empty; i++)
            if (byteStrides[i] == 0 && shape[i] > 1)
                throw new LayoutException("A broadcast (zero-stride) array aliases one element at several indices; a writable tensor span over it would make writes ambiguous. Fix: np.ascontiguousarray(arr), or a read-only view.");
        var dataLength = TensorLayout(pointer, shape, byteStrides, out var lengths, out var strides);
        try
        {
            return new TensorSpan<T>((T*)pointer, dataLength, lengths, strides);
        }
        catch (ArgumentException e)
        {
            throw InterleavedStrides(lengths, strides, e);
        }
    }

    // System.Numerics.Tensors (10.0) refuses strides where, ordered by size, one stride is smaller than the extent
    // of the next smaller one (e.g. lengths (2, 2), element strides (5, 3): NumPy's a[:, ::3] of a (2, 5) array),
    // although no two indices alias. Such layouts are valid NumPy arrays but cannot be a tensor span.
    private static LayoutException InterleavedStrides(nint[] lengths, nint[] strides, ArgumentException inner) =>
        new($"System.Numerics.Tensors cannot express lengths ({string.Join(", ", lengths)}) with element strides ({string.Join(", ", strides)}): " +
            "it refuses strides that interleave (a stride smaller than the extent of a smaller-strided dimension). " +
            "Fix: ToTensor()/ToArray() copy it, or np.ascontiguousarray(arr) in Python.", inner);

    // Lengths and element strides for System.Numerics.Tensors, and the number of elements the data must span.
    private static nint TensorLayout(nint pointer, ReadOnlySpan<nint> shape, ReadOnlySpan<nint> byteStrides, out nint[] lengths, out nint[] strides)
    {
        var rank = shape.Length;
        var count = Layout.ElementCount(shape);
        lengths = rank == 0 ? [1] : shape.ToArray();
        strides = new nint[lengths.Length];
        for (var i = 0; i < rank; i++)
        {
            var s = byteStrides[i];
            // A stride never decides an address along a dimension of length 1, nor in an empty array, and
            // System.Numerics.Tensors refuses the strides NumPy exports for empty arrays (e.g. (3, 1) for shape (0, 3)).
            if (shape[i] == 1 || count == 0) s = 0;
            if (s < 0 || s % sizeof(T) != 0)
                throw new LayoutException($"Dimension {i} has a byte stride of {s}, which a .NET tensor span cannot express (it needs non-negative multiples of {sizeof(T)}). " +
                                          "Fix: ToTensor()/ToArray() copy it, or np.ascontiguousarray(arr) in Python.");
            strides[i] = s / sizeof(T);
        }
        CheckAlignment(pointer, count);
        if (count == 0)
            return 0;
        nint extent = 1; // the elements from the first to the last one the strides reach
        for (var i = 0; i < rank; i++)
            extent = checked(extent + (shape[i] - 1) * strides[i]);
        return extent;
    }
}
