// Design notes: a zero-copy, typed view over an acquired Python buffer.
// - Validation happens once, at creation, in a fixed order: element type, byte order, size, read-only
//   (for writable views); layout and alignment are checked by the accessor that needs them.
// - Every accessor goes through Live(), which throws ObjectDisposedException after Dispose. Spans handed
//   out earlier are valid only until Dispose (a Span cannot be revoked); Memory<T> from AsMemory checks on
//   each access, so it fails loudly instead of reading released memory.
// - Size limits, tensor spans, alignment and chunked copies are ElementAccess<T>'s (shared with PythonValue): tensor
//   spans work at any size; spans, Memory and arrays beyond 2^31 - 1 elements throw TooManyElementsException.
using System.Buffers;
using System.Numerics.Tensors;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Buffers;

/// <summary>
/// A zero-copy view of a NumPy array's (or any buffer exporter's) memory as elements of <typeparamref name="T"/>.
/// Holds the Python buffer, and so keeps the memory alive, until disposed. Nothing is copied unless a method's
/// name says so (<see cref="CopyTo(Span{T})"/>, <see cref="ToArray"/>, <see cref="ToTensor"/>).
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

    /// <summary>
    /// The strides in bytes that the buffer exports (may be negative or zero). For NumPy arrays they equal <c>arr.strides</c>
    /// except where a stride cannot matter (a dimension of length 1, a zero-size array), where NumPy exports C strides.
    /// </summary>
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
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements (use <see cref="AsReadOnlyTensorSpan"/> or <see cref="CopyTo(long, Span{T})"/>).</exception>
    public ReadOnlySpan<T> AsReadOnlySpan() => new((void*)ContiguousPointer(), ElementAccess<T>.SpanLength(Length, nameof(AsReadOnlySpan)));

    /// <summary>The elements as a writable span, in C order. Zero-copy: writes are seen by NumPy. Valid until <see cref="Dispose"/>.</summary>
    /// <exception cref="ReadOnlyBufferException">The view was created read-only.</exception>
    /// <exception cref="LayoutException">The array is not C-contiguous.</exception>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements (use <see cref="AsTensorSpan"/>).</exception>
    public Span<T> AsSpan()
    {
        if (!IsWritable)
            throw new ReadOnlyBufferException("AsSpan");
        return new((void*)ContiguousPointer(), ElementAccess<T>.SpanLength(Length, nameof(AsSpan)));
    }

    /// <summary>The elements as <see cref="Memory{T}"/> (C-contiguous arrays only). Zero-copy; throws <see cref="ObjectDisposedException"/> once the view is disposed.</summary>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements (Memory has an int length).</exception>
    public Memory<T> AsMemory()
    {
        if (!IsWritable)
            throw new ReadOnlyBufferException("AsMemory (use AsReadOnlyMemory for read-only views)");
        return new ViewMemoryManager(this, nameof(AsMemory)).Memory;
    }

    /// <summary>The elements as <see cref="ReadOnlyMemory{T}"/> (C-contiguous arrays only). Zero-copy.</summary>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements (Memory has an int length).</exception>
    public ReadOnlyMemory<T> AsReadOnlyMemory() => new ViewMemoryManager(this, nameof(AsReadOnlyMemory)).Memory;

    /// <summary>
    /// A strided read-only tensor span over the same memory. Zero-copy, at any size (native-int lengths). Handles C,
    /// Fortran, sliced, transposed and broadcast layouts.
    /// </summary>
    /// <exception cref="LayoutException">A stride is negative or not a multiple of the item size, the data is misaligned, or the
    /// strides interleave, which System.Numerics.Tensors refuses (copy with <see cref="ToTensor"/>).</exception>
    public ReadOnlyTensorSpan<T> AsReadOnlyTensorSpan()
    {
        var b = Live();
        return ElementAccess<T>.ReadOnlyTensorSpan(b.Pointer, b.Shape, b.Strides);
    }

    /// <summary>A strided, writable tensor span over the same memory, at any size. Zero-copy: writes are seen by NumPy.</summary>
    public TensorSpan<T> AsTensorSpan()
    {
        if (!IsWritable)
            throw new ReadOnlyBufferException("AsTensorSpan");
        var b = Live();
        return ElementAccess<T>.TensorSpan(b.Pointer, b.Shape, b.Strides);
    }

    /// <summary>
    /// Copies the elements, in C order, into <paramref name="destination"/> (gathering strides, swapping bytes if needed;
    /// bools come out canonical: 0 or 1).
    /// </summary>
    /// <exception cref="ArgumentException">The destination is shorter than <see cref="Length"/>.</exception>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements: no span holds them (copy in chunks with <see cref="CopyTo(long, Span{T})"/>).</exception>
    public void CopyTo(Span<T> destination)
    {
        var length = Live().ElementCount;
        ElementAccess<T>.SpanLength(length, nameof(CopyTo));
        if (destination.Length < length)
            throw new ArgumentException($"The destination holds {destination.Length} elements; the array has {length}.", nameof(destination));
        CopyTo(0, destination[..(int)length]);
    }

    /// <summary>
    /// Copies <paramref name="destination"/>.Length elements, from C-order index <paramref name="start"/> on, into
    /// <paramref name="destination"/>: a chunk of the array, for arrays of any size (more than a span holds included).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the array.</exception>
    public void CopyTo(long start, Span<T> destination)
    {
        var b = Live();
        ElementAccess<T>.CopyOut(b.Pointer, b.Shape, b.Strides, 1, destination, start);
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

    /// <summary>Copies the elements, in C order, into a new array (bools canonical).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array holds (<see cref="Array.MaxLength"/>).</exception>
    public T[] ToArray()
    {
        var result = GC.AllocateUninitializedArray<T>(ElementAccess<T>.ArrayLength(Length, nameof(ToArray)));
        CopyTo(0, result);
        return result;
    }

    /// <summary>Copies the elements into a new <see cref="Tensor{T}"/> of the same shape (C order).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array (a tensor's storage) holds.</exception>
    public Tensor<T> ToTensor()
    {
        var shape = Live().Shape;
        ElementAccess<T>.ArrayLength(Length, nameof(ToTensor));
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
        ElementAccess<T>.CheckAlignment(b.Pointer, b.ElementCount);
        return b.Pointer;
    }

    private sealed class ViewMemoryManager(ArrayView<T> view, string operation) : MemoryManager<T>
    {
        public override Span<T> GetSpan() => new((void*)view.ContiguousPointer(), ElementAccess<T>.SpanLength(view.Length, operation));

        public override MemoryHandle Pin(int elementIndex = 0) =>
            new((byte*)view.ContiguousPointer() + (nint)elementIndex * sizeof(T), default, this);

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}
