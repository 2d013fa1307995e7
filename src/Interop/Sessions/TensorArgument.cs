// Design notes: the session-neutral form of a tensor argument: C-order element bytes in native byte order,
// a shape and a dtype from the one table. Every session kind accepts it, so the decision "which .NET values
// are tensors" is made here once (TryCreate) and each session only decides how to carry the bytes.
using System.Numerics.Tensors;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Interop.Buffers;
using Interop.DTypes;

namespace Interop.Sessions;

/// <summary>
/// Tensor data for a call argument: a C-order (row-major) block of elements, its shape and dtype. Made from
/// <see cref="Memory{T}"/> (so spans of pooled or native memory can be passed), .NET arrays of any rank or
/// <see cref="Tensor{T}"/>. It refers to the caller's memory (no copy) until a session copies it into a Python tensor
/// during the call; keep the memory unchanged until the call returns.
/// </summary>
public sealed class TensorArgument
{
    private readonly Source _source;
    private readonly long[] _shape;

    private TensorArgument(Source source, DType dtype, long[] shape)
    {
        ElementCount = Layout.CheckShape(shape, source.ByteLength / dtype.ItemSize);
        _source = source;
        DType = dtype;
        _shape = shape;
    }

    /// <summary>The element dtype.</summary>
    public DType DType { get; }

    /// <summary>The dimensions (empty: a 0-d tensor).</summary>
    public IReadOnlyList<long> Shape => _shape;

    /// <summary>The number of elements.</summary>
    public long ElementCount { get; }

    /// <summary>
    /// The elements' bytes in C order and native byte order: the caller's memory, not a copy, except for an argument
    /// over strided memory (<see cref="FromMemory"/> with non-C-order strides), which gathers them into a new array.
    /// </summary>
    /// <exception cref="OverflowException">The elements take more than <see cref="int.MaxValue"/> bytes (a span cannot hold them).</exception>
    public ReadOnlySpan<byte> Bytes => _source.Chunk(0, checked((int)_source.ByteLength));

    /// <summary>The number of bytes of the elements (64-bit: a float[] of 2^29 + 1 elements is over 2 GiB).</summary>
    internal long ByteLength => _source.ByteLength;

    /// <summary>The bytes [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>), for copies in chunks of arguments over 2 GiB.</summary>
    internal ReadOnlySpan<byte> Chunk(long offset, int length) => _source.Chunk(offset, length);

    /// <summary>True when <see cref="Bytes"/> would gather (strided memory); sessions then use <see cref="CopyTo"/> for their one copy.</summary>
    public bool IsStrided => _source is StridedSource;

    /// <summary>Copies the elements in C order into <paramref name="destination"/> (gathering strided memory directly: one copy).</summary>
    /// <exception cref="ArgumentException">The destination is shorter than the elements' bytes.</exception>
    public void CopyTo(Span<byte> destination) => _source.CopyTo(destination);

    /// <summary>
    /// Copies the C-order bytes [<paramref name="offset"/>, <paramref name="offset"/> + destination length) into
    /// <paramref name="destination"/>, gathering a strided tensor's elements straight from its memory (no gathered copy):
    /// the unit of a copy of more than 2 GiB, which no span holds. Offset and length are multiples of the item size.
    /// </summary>
    internal void CopyRangeTo(long offset, Span<byte> destination) => _source.CopyRangeTo(offset, destination);

    /// <summary>
    /// An argument over native memory at <paramref name="address"/>: <paramref name="shape"/>, strides in bytes (not
    /// negative; C order when empty), no copy until a session copies it during the call. <paramref name="keepAlive"/>
    /// (e.g. the tensor that owns the memory) is referenced until the argument is collected; the caller keeps the
    /// memory valid and unchanged until the call returns. For tensor libraries' adapters (Interop.TorchSharp).
    /// </summary>
    /// <exception cref="ArgumentException">Strides do not match the shape, or are negative.</exception>
    public static TensorArgument FromMemory(nint address, DType dtype, long[] shape, long[] byteStrides, object? keepAlive)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        ArgumentNullException.ThrowIfNull(shape);
        shape = (long[])shape.Clone();
        var count = Layout.ElementCount(shape);
        var c = Layout.CContiguousStrides(shape, dtype.ItemSize);
        byteStrides = byteStrides is null || byteStrides.Length == 0 ? c : (long[])byteStrides.Clone();
        if (byteStrides.Length != shape.Length || byteStrides.Any(x => x < 0))
            throw new ArgumentException($"{byteStrides.Length} strides for {shape.Length} dimensions, or a negative stride: pass one non-negative byte stride per dimension.", nameof(byteStrides));
        if (count > 0 && address == 0)
            throw new ArgumentException("A null address for a non-empty tensor.", nameof(address));
        var contiguous = count <= 1 || Enumerable.Range(0, shape.Length).All(d => shape[d] == 1 || byteStrides[d] == c[d]);
        Source source = contiguous ? new NativeSource(address, checked(count * dtype.ItemSize), keepAlive)
                                   : new StridedSource(address, dtype.ItemSize, shape, byteStrides, count, keepAlive);
        return new(source, dtype, shape);
    }

    /// <summary>
    /// Adds a converter for tensor types this assembly does not know: it returns an argument for values it handles,
    /// else null. Interop.TorchSharp registers one for TorchSharp tensors (so they can be passed to any session).
    /// </summary>
    public static void RegisterConverter(Func<object, TensorArgument?> converter)
    {
        ArgumentNullException.ThrowIfNull(converter);
        lock (s_converters)
            s_converters.Add(converter);
    }

    private static readonly List<Func<object, TensorArgument?>> s_converters = [];

    /// <summary>An argument over <paramref name="data"/> with <paramref name="shape"/> (default: 1-d). No copy.</summary>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is not in the dtype table.</exception>
    /// <exception cref="ArgumentException">The shape does not hold exactly <c>data.Length</c> elements.</exception>
    public static TensorArgument Create<T>(ReadOnlyMemory<T> data, params long[] shape) where T : unmanaged =>
        new(new MemorySource<T>(data), DType.Of<T>(), shape is null || shape.Length == 0 ? [data.Length] : (long[])shape.Clone());

    /// <summary>
    /// A 0-d tensor holding <paramref name="value"/> (shape <c>()</c>), for callees that want a tensor, not a Python
    /// number. <see cref="Create{T}(ReadOnlyMemory{T}, long[])"/> without a shape means 1-d, so it cannot express this.
    /// </summary>
    public static TensorArgument Scalar<T>(T value) where T : unmanaged =>
        new(new MemorySource<T>(new[] { value }), DType.Of<T>(), []);

    /// <summary>An argument over a .NET array of any rank (<c>T[]</c>, <c>T[,]</c>, ...), with the array's shape. No copy.</summary>
    /// <exception cref="NotSupportedException">The element type is not in the dtype table.</exception>
    public static TensorArgument FromArray(Array array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var dtype = DType.Of(array.GetType().GetElementType()!);
        var shape = Enumerable.Range(0, array.Rank).Select(d => (long)array.GetLength(d)).ToArray();
        return new(new ArraySource(array, dtype.ItemSize), dtype, shape);
    }

    /// <summary>An argument with the shape and elements of <paramref name="tensor"/> (copied once into C order).</summary>
    public static TensorArgument FromTensor<T>(Tensor<T> tensor) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var data = new T[tensor.FlattenedLength];
        tensor.FlattenTo(data);
        var shape = tensor.Lengths.ToArray().Select(d => (long)d).ToArray();
        return new(new MemorySource<T>(data), DType.Of<T>(), shape);
    }

    /// <summary>A C-order copy of a tensor result's elements (so a result can be passed back as an argument, in any session).</summary>
    internal static unsafe TensorArgument CopyOf(TensorData data)
    {
        var bytes = new byte[checked((int)(data.ElementCount * data.DType.ItemSize))];
        var shape = data.Shape.Select(d => (nint)d).ToArray();
        var strides = data.Strides.Select(s => (nint)s).ToArray();
        fixed (byte* dst = bytes)
            StridedCopy.Gather((byte*)data.Address, shape, strides, data.DType.ItemSize, 1, dst);
        return new(new MemorySource<byte>(bytes), data.DType, [.. data.Shape]);
    }

    /// <summary>A C-order copy of an in-process NumPy array's elements (so an <see cref="NumPy.NDArray"/> can go to a worker process).</summary>
    /// <exception cref="NotSupportedException">The array's dtype has no .NET element type.</exception>
    internal static TensorArgument CopyOf(NumPy.NDArray array)
    {
        var dtype = array.DType;
        var clr = dtype.ClrType ?? throw new NotSupportedException($"A {dtype.Name} array has no .NET element type to copy it through.");
        var flat = (Array)typeof(NumPy.NDArray).GetMethod(nameof(NumPy.NDArray.ToArray))!.MakeGenericMethod(clr).Invoke(array, null)!;
        return new(new ArraySource(flat, dtype.ItemSize), dtype, array.Shape);
    }

    /// <summary>
    /// The one rule for which call arguments are tensors: a <see cref="TensorArgument"/>, a .NET array whose element
    /// type is in the dtype table, or a <see cref="Tensor{T}"/> of such a type. Other values give false.
    /// </summary>
    public static bool TryCreate(object? value, out TensorArgument? argument)
    {
        argument = value switch
        {
            TensorArgument t => t,
            Array a when a.GetType().GetElementType() is { } e && IsElementType(e) => FromArray(a),
            not null when value.GetType() is { IsGenericType: true } type && type.GetGenericTypeDefinition() == typeof(Tensor<>)
                                                                          && IsElementType(type.GetGenericArguments()[0]) => FromTensorObject(value, type),
            _ => null,
        };
        if (argument is null && value is not null and not string)
            argument = Converted(value);
        return argument is not null;
    }

    private static TensorArgument? Converted(object value)
    {
        // TorchSharp tensors: the adapter lives in Interop.TorchSharp (this assembly never references TorchSharp);
        // loading it runs its module initializer, which registers the converter.
        if (IsTorchSharpTensor(value.GetType()) && !s_torchSharpAdapterLoaded)
        {
            s_torchSharpAdapterLoaded = true;
            try
            {
                var adapter = Assembly.Load("Interop.TorchSharp");
                RuntimeHelpers.RunModuleConstructor(adapter.ManifestModule.ModuleHandle);
            }
            catch (FileNotFoundException)
            {
                // Not deployed: TorchSharp tensors stay unsupported arguments (the session's error says so).
            }
        }
        Func<object, TensorArgument?>[] converters;
        lock (s_converters)
            converters = [.. s_converters];
        foreach (var converter in converters)
            if (converter(value) is { } argument)
                return argument;
        return null;
    }

    private static volatile bool s_torchSharpAdapterLoaded;

    private static bool IsTorchSharpTensor(Type? type)
    {
        for (; type is not null; type = type.BaseType)
            if (type.FullName == "TorchSharp.torch+Tensor")
                return true;
        return false;
    }

    private static bool IsElementType(Type type) => DType.All.Any(d => d.ClrType == type);

    private static TensorArgument FromTensorObject(object tensor, Type type) =>
        (TensorArgument)typeof(TensorArgument).GetMethod(nameof(FromTensor))!.MakeGenericMethod(type.GetGenericArguments()[0]).Invoke(null, [tensor])!;

    private abstract class Source
    {
        public abstract long ByteLength { get; }

        public abstract ReadOnlySpan<byte> Chunk(long offset, int length);

        /// <summary>Copies all bytes in C order into <paramref name="destination"/>.</summary>
        public virtual void CopyTo(Span<byte> destination)
        {
            if (destination.Length < ByteLength)
                throw new ArgumentException($"The destination holds {destination.Length} bytes; the tensor has {ByteLength}.", nameof(destination));
            Chunk(0, checked((int)ByteLength)).CopyTo(destination);
        }

        /// <summary>Copies the C-order bytes [offset, offset + destination.Length) into <paramref name="destination"/>.</summary>
        public virtual void CopyRangeTo(long offset, Span<byte> destination) => Chunk(offset, destination.Length).CopyTo(destination);

        protected void CheckRange(long offset, int length)
        {
            if (offset < 0 || length < 0 || offset > ByteLength || length > ByteLength - offset)
                throw new ArgumentOutOfRangeException(nameof(offset), $"bytes [{offset}, {offset} + {length}) are outside the argument's {ByteLength} bytes");
        }
    }

    private sealed unsafe class NativeSource(nint address, long byteLength, object? keepAlive) : Source
    {
        private readonly object? _keepAlive = keepAlive;

        public override long ByteLength => byteLength;

        // Safety: the caller keeps the memory valid for the argument's use (documented on FromMemory); _keepAlive roots its owner;
        // CheckRange keeps the span inside [address, address + byteLength).
        public override ReadOnlySpan<byte> Chunk(long offset, int length)
        {
            CheckRange(offset, length);
            GC.KeepAlive(_keepAlive);
            return new ReadOnlySpan<byte>((byte*)address + offset, length);
        }
    }

    private sealed unsafe class StridedSource(nint address, int itemSize, long[] shape, long[] byteStrides, long count, object? keepAlive) : Source
    {
        private readonly object? _keepAlive = keepAlive;
        private byte[]? _gathered;

        public override long ByteLength => count * itemSize;

        // Strided memory has no contiguous bytes to slice: gathered once (C order), then sliced. Sessions use CopyTo (one copy).
        public override ReadOnlySpan<byte> Chunk(long offset, int length)
        {
            CheckRange(offset, length);
            if (_gathered is null)
            {
                var gathered = new byte[checked((int)ByteLength)];
                CopyTo(gathered);
                _gathered = gathered;
            }
            return _gathered.AsSpan((int)offset, length);
        }

        public override void CopyTo(Span<byte> destination)
        {
            if (destination.Length < ByteLength)
                throw new ArgumentException($"The destination holds {destination.Length} bytes; the tensor has {ByteLength}.", nameof(destination));
            if (count == 0)
                return;
            var s = shape.Select(d => (nint)d).ToArray();
            var st = byteStrides.Select(d => (nint)d).ToArray();
            // Safety: the caller keeps the strided memory valid (FromMemory's contract); the destination is checked above.
            fixed (byte* to = destination)
                StridedCopy.Gather((byte*)address, s, st, itemSize, 1, to);
            GC.KeepAlive(_keepAlive);
        }

        public override void CopyRangeTo(long offset, Span<byte> destination)
        {
            CheckRange(offset, destination.Length);
            if (offset % itemSize != 0 || destination.Length % itemSize != 0)
                throw new ArgumentOutOfRangeException(nameof(offset), $"bytes [{offset}, {offset} + {destination.Length}) do not start and end on {itemSize}-byte elements");
            if (destination.Length == 0)
                return;
            var s = shape.Select(d => (nint)d).ToArray();
            var st = byteStrides.Select(d => (nint)d).ToArray();
            // Safety: as CopyTo; the element range is checked against the byte range above and again by Gather.
            fixed (byte* to = destination)
                StridedCopy.Gather((byte*)address, s, st, itemSize, 1, to, start: (nint)(offset / itemSize), count: destination.Length / itemSize);
            GC.KeepAlive(_keepAlive);
        }
    }

    private sealed class MemorySource<T>(ReadOnlyMemory<T> memory) : Source where T : unmanaged
    {
        public override long ByteLength => (long)memory.Length * Unsafe.SizeOf<T>();

        public override ReadOnlySpan<byte> Chunk(long offset, int length)
        {
            CheckRange(offset, length);
            ref var start = ref Unsafe.As<T, byte>(ref MemoryMarshal.GetReference(memory.Span));
            return MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref start, (nint)offset), length);
        }
    }

    private sealed class ArraySource(Array array, int itemSize) : Source
    {
        public override long ByteLength => array.LongLength * itemSize;

        public override ReadOnlySpan<byte> Chunk(long offset, int length)
        {
            CheckRange(offset, length);
            return MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(array), (nint)offset), length);
        }
    }
}

/// <summary>A Python tuple argument of any length (a <see cref="System.Runtime.CompilerServices.ITuple"/>; value tuples are ITuples too).</summary>
internal sealed class TupleArgument(object?[] items) : System.Runtime.CompilerServices.ITuple
{
    public int Length => items.Length;

    public object? this[int index] => items[index];
}
