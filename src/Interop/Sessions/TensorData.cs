// Design notes: the memory of a tensor result. The in-process session keeps the Python buffer of the exported
// ndarray (zero-copy: the address is the tensor's storage); a worker-process session can keep bytes it received
// (FromBytes). PythonValue implements every accessor over Address/Shape/Strides once, for all sessions.
using System.Runtime.InteropServices;
using Interop.Buffers;
using Interop.DTypes;

namespace Interop.Sessions;

/// <summary>
/// The elements of a tensor result: an address valid until <see cref="Dispose()"/>, a shape, byte strides and a dtype.
/// Implementations release the memory (or the Python buffer that holds it) in <see cref="Dispose(bool)"/>.
/// </summary>
public abstract class TensorData : IDisposable
{
    private readonly long[] _shape;
    private readonly long[] _strides;
    private int _disposed;

    /// <summary>For implementations; <paramref name="strides"/> are in bytes (null: C order).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension, or a shape whose byte size overflows 64 bits.</exception>
    protected TensorData(DType dtype, long[] shape, long[]? strides)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        ArgumentNullException.ThrowIfNull(shape);
        DType = dtype;
        foreach (var d in shape)
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
        _shape = (long[])shape.Clone();
        _strides = strides is null ? Layout.CContiguousStrides(shape, dtype.ItemSize) : (long[])strides.Clone();
        if (_strides.Length != _shape.Length)
            throw new ArgumentException($"{_strides.Length} strides given for {_shape.Length} dimensions.", nameof(strides));
        try
        {
            ElementCount = Layout.ElementCount(_shape);
            _ = checked(ElementCount * dtype.ItemSize);
        }
        catch (OverflowException)
        {
            throw new ArgumentOutOfRangeException(nameof(shape), $"Shape ({string.Join(", ", shape)}) of {dtype.Name} needs more bytes than a 64-bit size: no memory can back it.");
        }
    }

    /// <summary>The element dtype.</summary>
    public DType DType { get; }

    /// <summary>The dimensions (empty for a 0-d tensor).</summary>
    public IReadOnlyList<long> Shape => _shape;

    /// <summary>The strides in bytes.</summary>
    public IReadOnlyList<long> Strides => _strides;

    /// <summary>The number of elements.</summary>
    public long ElementCount { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The address of element [0, 0, ...]; valid until <see cref="Dispose()"/>.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public nint Address
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return GetAddress();
        }
    }

    /// <summary>True when the elements are in C order without gaps.</summary>
    public bool IsCContiguous
    {
        get
        {
            long expected = DType.ItemSize;
            for (var i = _shape.Length - 1; i >= 0; i--)
            {
                if (_shape[i] != 1 && _strides[i] != expected)
                    return ElementCount == 0;
                expected *= _shape[i];
            }
            return true;
        }
    }

    /// <summary>Tensor data over a copy of <paramref name="bytes"/> (C order, native byte order), held in pinned managed memory.</summary>
    public static TensorData FromBytes(ReadOnlySpan<byte> bytes, DType dtype, params long[] shape)
    {
        var copy = GC.AllocateUninitializedArray<byte>(bytes.Length, pinned: true);
        bytes.CopyTo(copy);
        return new PinnedBytes(copy, dtype, shape);
    }

    /// <summary>The address of the first element (called only before disposal).</summary>
    protected abstract nint GetAddress();

    /// <summary>Releases the memory. Runs at most once.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the memory; <paramref name="disposing"/> is false from a finalizer.</summary>
    protected virtual void Dispose(bool disposing) { }

    private sealed class PinnedBytes : TensorData
    {
        private readonly byte[] _bytes; // allocated on the pinned object heap: its address never changes

        public PinnedBytes(byte[] bytes, DType dtype, long[] shape) : base(dtype, shape, null)
        {
            if (ElementCount * dtype.ItemSize != bytes.Length)
                throw new ArgumentException($"Shape ({string.Join(", ", shape)}) of {dtype.Name} needs {ElementCount * dtype.ItemSize} bytes, got {bytes.Length}.", nameof(bytes));
            _bytes = bytes;
        }

        protected override nint GetAddress() => Marshal.UnsafeAddrOfPinnedArrayElement(_bytes, 0);
    }
}
