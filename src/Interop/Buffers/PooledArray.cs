using System.Buffers;

namespace Interop.Buffers;

/// <summary>
/// A copy held in an array rented from an <see cref="ArrayPool{T}"/>: <see cref="Memory"/> has exactly the copied
/// length (the rented array may be longer). <see cref="Dispose"/> returns the array to the pool; memory handed out
/// before that must not be used afterwards (the pool may give the array to someone else).
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
public sealed class PooledArray<T> : IMemoryOwner<T>
{
    private readonly ArrayPool<T> _pool;
    private readonly int _length;
    private T[]? _array;

    internal PooledArray(ArrayPool<T> pool, int length)
    {
        _pool = pool;
        _length = length;
        _array = pool.Rent(length);
    }

    /// <summary>The copied elements. Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose"/>.</summary>
    public Memory<T> Memory => Live().AsMemory(0, _length);

    /// <summary>The copied elements as a span. Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose"/>.</summary>
    public Span<T> Span => Live().AsSpan(0, _length);

    /// <summary>The number of copied elements.</summary>
    public int Length => _length;

    /// <summary>Returns the array to its pool. Harmless when called again.</summary>
    public void Dispose()
    {
        var array = Interlocked.Exchange(ref _array, null);
        if (array is not null)
            _pool.Return(array);
    }

    private T[] Live() => _array ?? throw new ObjectDisposedException(nameof(PooledArray<T>), "The array went back to its pool.");
}
