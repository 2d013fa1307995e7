// Design notes: a zero-copy, typed view over an acquired Python buffer.
// - Validation happens once, at creation, in a fixed order: element type, byte order, size, read-only
//   (for writable views); layout and alignment are checked by the accessor that needs them.
// - Every accessor goes through Live(), which throws ObjectDisposedException after Dispose. Spans handed
//   out earlier are valid only until Dispose (a Span cannot be revoked); Memory<T> from AsMemory checks on
//   each access, so it fails loudly instead of reading released memory.
using System.Buffers;
using System.Numerics.Tensors;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Buffers;

/// <summary>
/// A zero-copy view of a NumPy array's (or any buffer exporter's) memory as elements of <typeparamref name="T"/>.
/// Holds the Python buffer, and so keeps the memory alive, until disposed. Nothing is copied unless a method's
/// name says so (<see cref="CopyTo"/>, <see cref="ToArray"/>, <see cref="ToTensor"/>).
/// </summary>
/// <typeparam name="T">The element type; must be the dtype table's type for the buffer's dtype.</typeparam>
public sealed unsafe class ArrayView<T> : IDisposable where T : unmanaged
{
    private readonly PythonBuffer _buffer;

    internal ArrayView(PythonBuffer buffer, bool writable)
    {
        _buffer = buffer;
        IsWritable = writable;
        var dtype = buffer.DType;
        if (dtype.ClrType != typeof(T))
            throw new ElementTypeMismatchException(typeof(T), dtype.Name, dtype.ClrType);
        if (!buffer.Format.IsNativeOrder)
            throw new ByteOrderException(dtype.Name);
        if (buffer.ElementCount * sizeof(T) != buffer.ByteLength)
            throw new LayoutException($"The buffer declares {buffer.ByteLength} bytes for shape ({string.Join(", ", buffer.Shape)}) of {dtype.Name}; refusing an inconsistent exporter.");
        if (writable && buffer.ReadOnly)
            throw new ReadOnlyBufferException("A writable view");
    }

    /// <summary>The dtype of the elements.</summary>
    public DType DType => _buffer.DType;

    /// <summary>True when the view may be written (see <see cref="AsSpan"/>).</summary>
    public bool IsWritable { get; }

    /// <summary>The dimensions (empty for a 0-d array).</summary>
    public ReadOnlySpan<nint> Shape => Live().Shape;

    /// <summary>The strides in bytes, as NumPy reports them (may be negative or zero).</summary>
    public ReadOnlySpan<nint> Strides => Live().Strides;

    /// <summary>The number of dimensions.</summary>
    public int Rank => Live().Shape.Length;

    /// <summary>The number of elements.</summary>
    public nint Length => Live().ElementCount;

    /// <summary>The address of element [0, 0, ...] (for identity checks; the memory belongs to Python).</summary>
    public nint Address => Live().Pointer;

    /// <summary>True when the elements are laid out in C (row-major) order without gaps.</summary>
    public bool IsCContiguous => Layout.IsCContiguous(Live().Shape, _buffer.Strides, sizeof(T));

    /// <summary>True when the view has not been disposed.</summary>
    public bool IsAlive => _buffer.IsAlive;

    /// <summary>The elements as a read-only span, in C order. Zero-copy. Valid until <see cref="Dispose"/>.</summary>
    /// <exception cref="LayoutException">The array is not C-contiguous (use <see cref="AsReadOnlyTensorSpan"/> or <see cref="ToArray"/>).</exception>
    public ReadOnlySpan<T> AsReadOnlySpan() => new((void*)ContiguousPointer(), checked((int)Length));

    /// <summary>The elements as a writable span, in C order. Zero-copy: writes are seen by NumPy. Valid until <see cref="Dispose"/>.</summary>
    /// <exception cref="ReadOnlyBufferException">The view was created read-only.</exception>
    /// <exception cref="LayoutException">The array is not C-contiguous.</exception>
    public Span<T> AsSpan()
    {
        if (!IsWritable)
            throw new ReadOnlyBufferException("AsSpan");
        return new((void*)ContiguousPointer(), checked((int)Length));
    }

    /// <summary>The elements as <see cref="Memory{T}"/> (C-contiguous arrays only). Zero-copy; throws <see cref="ObjectDisposedException"/> once the view is disposed.</summary>
    public Memory<T> AsMemory()
    {
        if (!IsWritable)
            throw new ReadOnlyBufferException("AsMemory (use AsReadOnlyMemory for read-only views)");
        return new ViewMemoryManager(this).Memory;
    }

    /// <summary>The elements as <see cref="ReadOnlyMemory{T}"/> (C-contiguous arrays only). Zero-copy.</summary>
    public ReadOnlyMemory<T> AsReadOnlyMemory() => new ViewMemoryManager(this).Memory;

    /// <summary>A strided read-only tensor span over the same memory. Zero-copy. Handles C, Fortran, sliced, transposed and broadcast layouts.</summary>
    /// <exception cref="LayoutException">A stride is negative or not a multiple of the item size, the data is misaligned, or the
    /// strides interleave, which System.Numerics.Tensors refuses (copy with <see cref="ToTensor"/>).</exception>
    public ReadOnlyTensorSpan<T> AsReadOnlyTensorSpan()
    {
        var span = TensorLayout(out var lengths, out var strides);
        try
        {
            return new ReadOnlyTensorSpan<T>(span, lengths, strides);
        }
        catch (ArgumentException e)
        {
            throw InterleavedStrides(lengths, strides, e);
        }
    }

    /// <summary>A strided, writable tensor span over the same memory. Zero-copy: writes are seen by NumPy.</summary>
    public TensorSpan<T> AsTensorSpan()
    {
        if (!IsWritable)
            throw new ReadOnlyBufferException("AsTensorSpan");
        if (_buffer.Strides.Contains(0) && Length > 1)
            throw new LayoutException("A broadcast (zero-stride) array aliases one element at several indices; a writable tensor span over it would make writes ambiguous. Fix: np.ascontiguousarray(arr), or a read-only view.");
        var span = TensorLayout(out var lengths, out var strides);
        try
        {
            return new TensorSpan<T>(span, lengths, strides);
        }
        catch (ArgumentException e)
        {
            throw InterleavedStrides(lengths, strides, e);
        }
    }

    /// <summary>Copies the elements, in C order, into <paramref name="destination"/> (gathering strides, swapping bytes if needed).</summary>
    /// <exception cref="ArgumentException">The destination is shorter than <see cref="Length"/>.</exception>
    public void CopyTo(Span<T> destination)
    {
        var b = Live();
        var length = b.ElementCount;
        if (destination.Length < length)
            throw new ArgumentException($"The destination holds {destination.Length} elements; the array has {length}.", nameof(destination));
        fixed (T* dst = destination)
            StridedCopy.Gather((byte*)b.Pointer, b.Shape, b.Strides, sizeof(T), 1, (byte*)dst);
        GC.KeepAlive(this);
    }

    /// <summary>
    /// Copies <paramref name="source"/> (C order) into the viewed memory, scattering it over the strides: the
    /// destination-passing way to write .NET data into an existing ndarray. Only for writable views.
    /// </summary>
    /// <exception cref="ReadOnlyBufferException">The view is read-only.</exception>
    /// <exception cref="ArgumentException"><paramref name="source"/> does not hold exactly <see cref="Length"/> elements.</exception>
    public void CopyFrom(ReadOnlySpan<T> source)
    {
        var b = Live();
        if (!IsWritable)
            throw new ReadOnlyBufferException("Copying into a read-only view");
        b.Scatter(source);
        GC.KeepAlive(this);
    }

    /// <summary>Copies the elements, in C order, into a new array.</summary>
    public T[] ToArray()
    {
        var result = GC.AllocateUninitializedArray<T>(checked((int)Length));
        CopyTo(result);
        return result;
    }

    /// <summary>Copies the elements into a new <see cref="Tensor{T}"/> of the same shape (C order).</summary>
    public Tensor<T> ToTensor()
    {
        var shape = Live().Shape;
        return Tensor.Create(ToArray(), shape.Length == 0 ? [1] : shape);
    }

    /// <summary>Releases the Python buffer. Harmless when called again.</summary>
    public void Dispose() => _buffer.Dispose();

    private PythonBuffer Live() => _buffer.IsAlive ? _buffer : throw new ObjectDisposedException(nameof(ArrayView<T>), "The view was disposed; its memory may be gone.");

    private nint ContiguousPointer()
    {
        var b = Live();
        if (!Layout.IsCContiguous(b.Shape, b.Strides, sizeof(T)))
            throw new LayoutException($"The array (shape ({string.Join(", ", b.Shape)}), strides ({string.Join(", ", b.Strides)}) bytes) is not C-contiguous, so a flat span cannot express it. " +
                                      "Fix: use AsReadOnlyTensorSpan() for a strided view, CopyTo/ToArray for a copy, or np.ascontiguousarray(arr) in Python.");
        CheckAlignment(b.Pointer, b.ElementCount);
        return b.Pointer;
    }

    // The CLR's alignment of T (what NumPy calls dtype.alignment): 4 for ComplexFloat, not its size of 8.
    private static readonly int s_alignment = sizeof(AlignmentProbe) - sizeof(T);

    private struct AlignmentProbe
    {
#pragma warning disable CS0649 // never assigned: only its layout matters
        public byte Before;
        public T Value;
#pragma warning restore CS0649
    }

    private static void CheckAlignment(nint pointer, nint count)
    {
        // An empty array accesses nothing, so its address need not be aligned (NumPy's rule too: flags.aligned is True).
        if (count != 0 && pointer % s_alignment != 0)
            throw new LayoutException($"The data at 0x{pointer:x} is not aligned for {typeof(T).Name}; a view would perform misaligned access. " +
                                      "Fix: copy (CopyTo/ToArray handle misaligned data), or np.require(arr, requirements='A') in Python.");
    }

    // System.Numerics.Tensors (10.0) refuses strides where, ordered by size, one stride is smaller than the extent
    // of the next smaller one (e.g. lengths (2, 2), element strides (5, 3): NumPy's a[:, ::3] of a (2, 5) array),
    // although no two indices alias. Such layouts are valid NumPy arrays but cannot be a tensor span.
    private static LayoutException InterleavedStrides(nint[] lengths, nint[] strides, ArgumentException inner) =>
        new($"System.Numerics.Tensors cannot express lengths ({string.Join(", ", lengths)}) with element strides ({string.Join(", ", strides)}): " +
            "it refuses strides that interleave (a stride smaller than the extent of a smaller-strided dimension). " +
            "Fix: ToTensor()/ToArray() copy it, or np.ascontiguousarray(arr) in Python.", inner);

    private Span<T> TensorLayout(out nint[] lengths, out nint[] strides)
    {
        var b = Live();
        var rank = b.Shape.Length;
        lengths = rank == 0 ? [1] : b.Shape.ToArray();
        strides = new nint[lengths.Length];
        for (var i = 0; i < rank; i++)
        {
            var s = b.Strides[i];
            // A stride never decides an address along a dimension of length 1, nor in an empty array, and
            // System.Numerics.Tensors refuses the strides NumPy exports for empty arrays (e.g. (3, 1) for shape (0, 3)).
            if (b.Shape[i] == 1 || b.ElementCount == 0) s = 0;
            if (s < 0 || s % sizeof(T) != 0)
                throw new LayoutException($"Dimension {i} has a byte stride of {s}, which a .NET tensor span cannot express (it needs non-negative multiples of {sizeof(T)}). " +
                                          "Fix: ToTensor()/ToArray() copy it, or np.ascontiguousarray(arr) in Python.");
            strides[i] = s / sizeof(T);
        }
        CheckAlignment(b.Pointer, b.ElementCount);
        var (_, high) = Layout.ByteExtent(b.Shape, b.Strides, sizeof(T));
        return new Span<T>((void*)b.Pointer, checked((int)(high / sizeof(T))));
    }

    private sealed class ViewMemoryManager(ArrayView<T> view) : MemoryManager<T>
    {
        public override Span<T> GetSpan() => new((void*)view.ContiguousPointer(), checked((int)view.Length));

        public override MemoryHandle Pin(int elementIndex = 0) =>
            new((byte*)view.ContiguousPointer() + (nint)elementIndex * sizeof(T), default, this);

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}
