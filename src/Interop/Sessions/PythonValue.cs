// Design notes: the result of a call, the same type for every kind of session. Sessions build values with the
// From* factories; every accessor (kind checks, tensor element access, strided copies) is implemented here once.
// A value owns what it holds: its tensor data, its items and its object reference; Dispose releases all of them.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Interop.Buffers;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Sessions;

/// <summary>What kind of Python value a <see cref="PythonValue"/> holds.</summary>
#pragma warning disable CA1720 // the kinds are named after Python's types
public enum PythonValueKind
{
    /// <summary><c>None</c>.</summary>
    None,
    /// <summary><c>bool</c>.</summary>
    Bool,
    /// <summary><c>int</c> that fits in 64 bits.</summary>
    Int,
    /// <summary><c>float</c>.</summary>
    Float,
    /// <summary><c>str</c>.</summary>
    String,
    /// <summary>A <c>torch.Tensor</c> or <c>numpy.ndarray</c>, exported to memory .NET can read.</summary>
    Tensor,
    /// <summary>A <c>list</c> or <c>tuple</c>; see <see cref="PythonValue.Items"/>.</summary>
    Sequence,
    /// <summary>A <c>dict</c>; see <see cref="PythonValue.Entries"/>.</summary>
    Mapping,
    /// <summary>Any other object (a module, an <c>nn.Module</c>, a big int, ...); see <see cref="PythonValue.AsRef"/>.</summary>
    Object,
    /// <summary><c>bytes</c>; see <see cref="PythonValue.AsBytes"/>.</summary>
    Bytes,
}
#pragma warning restore CA1720

/// <summary>
/// A value returned by Python. Scalars and strings are copied into .NET; tensors (and NumPy arrays) keep their
/// memory, readable without a copy through <see cref="AsReadOnlySpan{T}"/> until <see cref="Dispose"/>; other objects
/// stay in the session as a <see cref="PythonRef"/>. Dispose the value to release tensor memory and references.
/// </summary>
public sealed class PythonValue : IDisposable
{
    private readonly object? _value; // bool, long, double, string, byte[], TensorData, PythonValue[], KeyValuePair<,>[], PythonRef
    private int _disposed;

    private PythonValue(PythonValueKind kind, object? value, string pythonType)
    {
        Kind = kind;
        _value = value;
        PythonType = pythonType;
    }

    /// <summary>The kind of value.</summary>
    public PythonValueKind Kind { get; }

    /// <summary>The Python type's name (<c>int</c>, <c>tuple</c>, ...); for tensors the type after export (in-process: <c>numpy.ndarray</c>).</summary>
    public string PythonType { get; }

    // ---- factories, for session implementations -------------------------------------------------------

    /// <summary><c>None</c>.</summary>
    public static PythonValue FromNone() => new(PythonValueKind.None, null, "NoneType");

    /// <summary>A <c>bool</c>.</summary>
    public static PythonValue FromBool(bool value) => new(PythonValueKind.Bool, value, "bool");

    /// <summary>An <c>int</c>.</summary>
    public static PythonValue FromInt64(long value, string pythonType = "int") => new(PythonValueKind.Int, value, pythonType);

    /// <summary>A <c>float</c>.</summary>
    public static PythonValue FromDouble(double value, string pythonType = "float") => new(PythonValueKind.Float, value, pythonType);

    /// <summary>A <c>str</c>.</summary>
    public static PythonValue FromString(string value) => new(PythonValueKind.String, value ?? throw new ArgumentNullException(nameof(value)), "str");

    /// <summary>A <c>bytes</c> object (copied).</summary>
    public static PythonValue FromBytes(ReadOnlySpan<byte> value) => new(PythonValueKind.Bytes, value.ToArray(), "bytes");

    /// <summary>A tensor whose memory <paramref name="data"/> holds; the value takes ownership of it.</summary>
    public static PythonValue FromTensor(TensorData data, string pythonType = "torch.Tensor") =>
        new(PythonValueKind.Tensor, data ?? throw new ArgumentNullException(nameof(data)), pythonType);

    /// <summary>A list or tuple; the value takes ownership of the items.</summary>
    public static PythonValue FromSequence(IEnumerable<PythonValue> items, string pythonType) =>
        new(PythonValueKind.Sequence, (items ?? throw new ArgumentNullException(nameof(items))).ToArray(), pythonType);

    /// <summary>A dict; the value takes ownership of keys and values.</summary>
    public static PythonValue FromMapping(IEnumerable<KeyValuePair<PythonValue, PythonValue>> entries, string pythonType = "dict") =>
        new(PythonValueKind.Mapping, (entries ?? throw new ArgumentNullException(nameof(entries))).ToArray(), pythonType);

    /// <summary>Any other object, kept in its session; the value takes ownership of the reference.</summary>
    public static PythonValue FromObject(PythonRef reference) =>
        new(PythonValueKind.Object, reference ?? throw new ArgumentNullException(nameof(reference)), reference.PythonType);

    // ---- scalars and strings ---------------------------------------------------------------------------

    /// <summary>True when the value is <c>None</c>.</summary>
    public bool IsNone => Kind == PythonValueKind.None;

    /// <summary>The <c>bool</c>.</summary>
    /// <exception cref="PythonValueKindException">The value is not a bool.</exception>
    public bool AsBool() => Get<bool>(PythonValueKind.Bool, nameof(AsBool));

    /// <summary>The <c>int</c>, or the element of a one-element tensor of an integer or bool dtype (a 0-d result such as a count).</summary>
    /// <exception cref="PythonValueKindException">The value is not an int, nor a one-element integer tensor.</exception>
    /// <exception cref="OverflowException">A uint64 element above <see cref="long.MaxValue"/>.</exception>
    public long AsInt64()
    {
        if (Kind == PythonValueKind.Tensor && ScalarElement(nameof(AsInt64)) is { } data &&
            data.DType.Kind is DTypeKind.SignedInteger or DTypeKind.UnsignedInteger or DTypeKind.Bool)
            return data.DType.ClrType == typeof(ulong) ? checked((long)ReadElement<ulong>(data)) : (long)ReadAsDouble(data);
        if (Kind == PythonValueKind.Tensor)
            throw new PythonValueKindException(nameof(AsInt64), "Int (or a one-element integer tensor)", Kind, $"{PythonType} of {DType}; use AsDouble or Item<T>");
        return Get<long>(PythonValueKind.Int, nameof(AsInt64));
    }

    /// <summary>
    /// The <c>float</c> (an <c>int</c> is widened), or the element of a one-element tensor or array of a real dtype, converted
    /// to double (like <c>tensor.item()</c>; a 0-d loss reads as <c>loss.AsDouble()</c>).
    /// </summary>
    /// <exception cref="PythonValueKindException">The value is not a float or int, nor a one-element real tensor.</exception>
    public double AsDouble()
    {
        if (Kind == PythonValueKind.Tensor)
        {
            var data = ScalarElement(nameof(AsDouble));
            if (data.DType.Kind == DTypeKind.Complex || data.DType.ClrType is null)
                throw new PythonValueKindException(nameof(AsDouble), "Float (or a one-element real tensor)", Kind, $"{PythonType} of {data.DType}");
            return ReadAsDouble(data);
        }
        return Kind == PythonValueKind.Int ? AsInt64() : Get<double>(PythonValueKind.Float, nameof(AsDouble));
    }

    /// <summary>
    /// The element of a one-element tensor (0-d or any shape with one element) as its exact element type <typeparamref name="T"/>
    /// (<c>float</c> for float32, ...); for a Python <c>int</c> or <c>float</c> value, the number converted to <typeparamref name="T"/>.
    /// </summary>
    /// <exception cref="ElementTypeMismatchException"><typeparamref name="T"/> is not the tensor's element type.</exception>
    /// <exception cref="PythonValueKindException">The value is neither a number nor a one-element tensor.</exception>
    public T Item<T>() where T : unmanaged
    {
        switch (Kind)
        {
            case PythonValueKind.Tensor:
                var data = ScalarElement(nameof(Item));
                if (data.DType.ClrType != typeof(T))
                    throw new ElementTypeMismatchException(typeof(T), data.DType.Name, data.DType.ClrType);
                return ReadElement<T>(data);
            case PythonValueKind.Int:
                return (T)Convert.ChangeType(AsInt64(), typeof(T), System.Globalization.CultureInfo.InvariantCulture);
            case PythonValueKind.Float:
                return (T)Convert.ChangeType(AsDouble(), typeof(T), System.Globalization.CultureInfo.InvariantCulture);
            case PythonValueKind.Bool when typeof(T) == typeof(bool):
                return (T)(object)AsBool();
            default:
                throw new PythonValueKindException(nameof(Item), "Int, Float or one-element Tensor", Kind, PythonType);
        }
    }

    /// <summary>The <c>str</c>.</summary>
    /// <exception cref="PythonValueKindException">The value is not a str.</exception>
    public string AsString() => Get<string>(PythonValueKind.String, nameof(AsString));

    /// <summary>A copy of the <c>bytes</c>.</summary>
    /// <exception cref="PythonValueKindException">The value is not bytes.</exception>
    public byte[] AsBytes() => (byte[])Get<byte[]>(PythonValueKind.Bytes, nameof(AsBytes)).Clone();

    /// <summary>The object, still in its session (for <see cref="PythonValueKind.Object"/>). The value keeps ownership: the
    /// reference is valid until the value is disposed (use <c>GetAttr</c> on it to get independent references).</summary>
    /// <exception cref="PythonValueKindException">The value is not an object kind.</exception>
    public PythonRef AsRef() => Get<PythonRef>(PythonValueKind.Object, nameof(AsRef));

    // ---- containers ------------------------------------------------------------------------------------

    /// <summary>The items of a list or tuple.</summary>
    /// <exception cref="PythonValueKindException">The value is not a sequence.</exception>
    public IReadOnlyList<PythonValue> Items => Get<PythonValue[]>(PythonValueKind.Sequence, nameof(Items));

    /// <summary>The item at <paramref name="index"/> of a list or tuple.</summary>
    [IndexerName("ItemAt")] // the indexers' metadata name: "Item" is the scalar accessor Item<T>() (as torch's tensor.item())
    public PythonValue this[int index] => Items[index];

    /// <summary>The entries of a dict, in its order.</summary>
    /// <exception cref="PythonValueKindException">The value is not a mapping.</exception>
    public IReadOnlyList<KeyValuePair<PythonValue, PythonValue>> Entries =>
        Get<KeyValuePair<PythonValue, PythonValue>[]>(PythonValueKind.Mapping, nameof(Entries));

    /// <summary>The value of a dict at the string key <paramref name="key"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such key.</exception>
    [IndexerName("ItemAt")]
    public PythonValue this[string key]
    {
        get
        {
            foreach (var (k, v) in Entries)
                if (k.Kind == PythonValueKind.String && k.AsString() == key)
                    return v;
            throw new KeyNotFoundException($"The dict has no key '{key}'.");
        }
    }

    // ---- tensors ---------------------------------------------------------------------------------------

    /// <summary>The tensor's memory, shape, strides and dtype (valid until the value is disposed).</summary>
    /// <exception cref="PythonValueKindException">The value is not a tensor.</exception>
    public TensorData AsTensorData() => Get<TensorData>(PythonValueKind.Tensor, nameof(AsTensorData));

    /// <summary>The tensor's dimensions.</summary>
    public long[] Shape => AsTensorData().Shape.ToArray();

    /// <summary>The tensor's dtype (from the dtype table).</summary>
    public DType DType => AsTensorData().DType;

    /// <summary>The number of elements of the tensor.</summary>
    public long ElementCount => AsTensorData().ElementCount;

    /// <summary>
    /// The elements, in C order, <b>without a copy</b>: valid until <see cref="Dispose"/>. Bool elements are the bytes as
    /// they are (see docs/buffers.md: copies give canonical bools, views do not).
    /// </summary>
    /// <exception cref="ElementTypeMismatchException"><typeparamref name="T"/> is not the dtype's element type.</exception>
    /// <exception cref="LayoutException">The tensor is not C-contiguous (use <see cref="ToArray{T}"/> or <see cref="CopyTo{T}(Span{T})"/>), or its memory is misaligned for <typeparamref name="T"/>.</exception>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements (use <see cref="AsReadOnlyTensorSpan{T}"/> or <see cref="CopyTo{T}(long, Span{T})"/>).</exception>
    public unsafe ReadOnlySpan<T> AsReadOnlySpan<T>() where T : unmanaged
    {
        var data = Typed<T>();
        if (!data.IsCContiguous)
            throw new LayoutException($"The tensor (shape ({string.Join(", ", data.Shape)}), strides ({string.Join(", ", data.Strides)}) bytes) is not C-contiguous, " +
                                      "so a flat span cannot express it. Fix: AsReadOnlyTensorSpan for a strided view, ToArray/CopyTo copy it in C order, or return tensor.contiguous() from Python.");
        var length = ElementAccess<T>.SpanLength(data.ElementCount, nameof(AsReadOnlySpan));
        var address = data.Address;
        ElementAccess<T>.CheckAlignment(address, length);
        // Safety: the memory is held by the TensorData until this value is disposed; the span is documented as valid until then.
        return new ReadOnlySpan<T>((void*)address, length);
    }

    /// <summary>
    /// The elements as a strided read-only tensor span, <b>without a copy</b>, at any size (native-int lengths): valid until
    /// <see cref="Dispose"/>. A 0-d tensor gives lengths [1].
    /// </summary>
    /// <exception cref="ElementTypeMismatchException"><typeparamref name="T"/> is not the dtype's element type.</exception>
    /// <exception cref="LayoutException">Strides that System.Numerics.Tensors cannot express (negative, not whole elements, interleaved) or misaligned memory: copy instead.</exception>
    public ReadOnlyTensorSpan<T> AsReadOnlyTensorSpan<T>() where T : unmanaged
    {
        var data = Typed<T>();
        var (shape, strides) = NativeLayout(data);
        // Safety: as AsReadOnlySpan: the memory is held until this value is disposed.
        return ElementAccess<T>.ReadOnlyTensorSpan(data.Address, shape, strides);
    }

    /// <summary>Copies the elements, in C order, into <paramref name="destination"/> (bools canonical: 0 or 1).</summary>
    /// <exception cref="ArgumentException">The destination is too short.</exception>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements: copy in chunks with <see cref="CopyTo{T}(long, Span{T})"/>.</exception>
    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        var data = Typed<T>();
        var length = ElementAccess<T>.SpanLength(data.ElementCount, nameof(CopyTo));
        if (destination.Length < length)
            throw new ArgumentException($"The destination holds {destination.Length} elements; the tensor has {data.ElementCount}.", nameof(destination));
        CopyTo(0, destination[..length]);
    }

    /// <summary>
    /// Copies <paramref name="destination"/>.Length elements, from C-order index <paramref name="start"/> on, into
    /// <paramref name="destination"/> (bools canonical): a chunk, for tensors of any size.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the tensor.</exception>
    public void CopyTo<T>(long start, Span<T> destination) where T : unmanaged
    {
        var data = Typed<T>();
        var (shape, strides) = NativeLayout(data);
        ElementAccess<T>.CopyOut(data.Address, shape, strides, 1, destination, start);
    }

    /// <summary>Copies the elements, in C order, into a new array (bools canonical).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array holds (<see cref="Array.MaxLength"/>).</exception>
    public T[] ToArray<T>() where T : unmanaged
    {
        var result = GC.AllocateUninitializedArray<T>(ElementAccess<T>.ArrayLength(Typed<T>().ElementCount, nameof(ToArray)));
        CopyTo(0, result.AsSpan());
        return result;
    }

    /// <summary>Copies the elements into a new <see cref="Tensor{T}"/> of the same shape (a 0-d tensor gives shape [1]).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array (a tensor's storage) holds.</exception>
    public Tensor<T> ToTensor<T>() where T : unmanaged
    {
        var data = Typed<T>();
        ElementAccess<T>.ArrayLength(data.ElementCount, nameof(ToTensor));
        var (shape, _) = NativeLayout(data);
        return Tensor.Create(ToArray<T>(), shape.Length == 0 ? [1] : shape);
    }

    /// <summary>Copies the elements into a new .NET array of the tensor's rank (<c>T[,]</c>, ...; 0-d gives <c>T[1]</c>).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array holds.</exception>
    public Array ToMultidimensionalArray<T>() where T : unmanaged
    {
        var data = Typed<T>();
        var (shape, _) = NativeLayout(data);
        var result = NumPy.NDArray.NewMultidimensionalArray<T>(shape, data.ElementCount);
        CopyTo(0, MemoryMarshal.CreateSpan(ref Unsafe.As<byte, T>(ref MemoryMarshal.GetArrayDataReference(result)), result.Length));
        return result;
    }

    /// <summary>Copies a 2-d tensor into a new <c>T[,]</c> (C order).</summary>
    /// <exception cref="LayoutException">The tensor's rank is not 2.</exception>
    public T[,] ToArray2D<T>() where T : unmanaged => (T[,])ToRankArray<T>(2);

    /// <summary>Copies a 3-d tensor into a new <c>T[,,]</c> (C order).</summary>
    /// <exception cref="LayoutException">The tensor's rank is not 3.</exception>
    public T[,,] ToArray3D<T>() where T : unmanaged => (T[,,])ToRankArray<T>(3);

    /// <summary>Copies a 4-d tensor into a new <c>T[,,,]</c> (C order; e.g. a batch of images).</summary>
    /// <exception cref="LayoutException">The tensor's rank is not 4.</exception>
    public T[,,,] ToArray4D<T>() where T : unmanaged => (T[,,,])ToRankArray<T>(4);

    private Array ToRankArray<T>(int rank) where T : unmanaged
    {
        var data = Typed<T>();
        if (data.Shape.Count != rank)
            throw new LayoutException($"The tensor has rank {data.Shape.Count} (shape ({string.Join(", ", data.Shape)})), not {rank}. " +
                                      "Fix: use the ToArray method of its rank (ToArray for 1-d, ToArray2D, ToArray3D, ToArray4D) or ToMultidimensionalArray.");
        return ToMultidimensionalArray<T>();
    }

    /// <summary>A short description, e.g. <c>Tensor float32 (2, 3)</c> or <c>Int 42</c>.</summary>
    public override string ToString() => IsDisposed ? "disposed PythonValue" : Kind switch
    {
        PythonValueKind.Tensor => $"Tensor {DType} ({string.Join(", ", AsTensorData().Shape)})",
        PythonValueKind.Sequence => $"{PythonType} of {Items.Count}",
        PythonValueKind.Mapping => $"dict of {Entries.Count}",
        PythonValueKind.Object => $"Object {PythonType}",
        PythonValueKind.None => "None",
        PythonValueKind.Bytes => $"bytes of {((byte[])_value!).Length}",
        _ => $"{Kind} {Convert.ToString(_value, System.Globalization.CultureInfo.InvariantCulture)}",
    };

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Releases the tensor memory, the items and the object reference. Harmless when called again.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        switch (_value)
        {
            case TensorData t: t.Dispose(); break;
            case PythonRef r: r.Dispose(); break;
            case PythonValue[] items:
                foreach (var item in items)
                    item.Dispose();
                break;
            case KeyValuePair<PythonValue, PythonValue>[] entries:
                foreach (var (k, v) in entries)
                {
                    k.Dispose();
                    v.Dispose();
                }
                break;
        }
    }

    private T Get<T>(PythonValueKind kind, string accessor)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (Kind != kind)
            throw new PythonValueKindException(accessor, kind.ToString(), Kind, PythonType);
        return (T)_value!;
    }

    private static (nint[] Shape, nint[] Strides) NativeLayout(TensorData data) =>
        ([.. data.Shape.Select(d => checked((nint)d))], [.. data.Strides.Select(d => checked((nint)d))]);

    // The tensor, checked to hold exactly one element (whatever its rank), for the scalar accessors.
    private TensorData ScalarElement(string accessor)
    {
        var data = AsTensorData();
        if (data.ElementCount != 1)
            throw new PythonValueKindException(accessor, "scalar (or one-element tensor)", Kind,
                $"{PythonType} of shape ({string.Join(", ", data.Shape)}), {data.ElementCount} elements; use ToArray or AsReadOnlySpan");
        return data;
    }

    private static unsafe T ReadElement<T>(TensorData data) where T : unmanaged =>
        // Safety: the caller checked there is one element of type T at Address, held until the value is disposed.
        Unsafe.ReadUnaligned<T>((void*)data.Address);

    private static double ReadAsDouble(TensorData data)
    {
        var t = data.DType.ClrType;
        if (t == typeof(float)) return ReadElement<float>(data);
        if (t == typeof(double)) return ReadElement<double>(data);
        if (t == typeof(Half)) return (double)ReadElement<Half>(data);
        if (t == typeof(bool)) return ReadElement<byte>(data) != 0 ? 1 : 0;
        if (t == typeof(sbyte)) return ReadElement<sbyte>(data);
        if (t == typeof(byte)) return ReadElement<byte>(data);
        if (t == typeof(short)) return ReadElement<short>(data);
        if (t == typeof(ushort)) return ReadElement<ushort>(data);
        if (t == typeof(int)) return ReadElement<int>(data);
        if (t == typeof(uint)) return ReadElement<uint>(data);
        if (t == typeof(long)) return ReadElement<long>(data);
        if (t == typeof(ulong)) return ReadElement<ulong>(data);
        throw new PythonValueKindException(nameof(AsDouble), "real scalar", PythonValueKind.Tensor, data.DType.Name);
    }

    /// <summary>
    /// The .NET argument that passes this value back to Python (the rule of "results are arguments"): scalars and strings
    /// as themselves, bytes as <see cref="ReadOnlyMemory{T}"/> of byte, tensors as a C-order copy (a <see cref="TensorArgument"/>),
    /// lists as <c>object?[]</c>, tuples as a tuple, dicts with string keys as a dictionary, objects as their <see cref="PythonRef"/>.
    /// </summary>
    internal object? ToArgument(string where)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return Kind switch
        {
            PythonValueKind.None => null,
            PythonValueKind.Bool or PythonValueKind.Int or PythonValueKind.Float or PythonValueKind.String => _value,
            PythonValueKind.Bytes => new ReadOnlyMemory<byte>((byte[])_value!),
            PythonValueKind.Tensor => TensorArgument.CopyOf(AsTensorData()),
            PythonValueKind.Sequence when PythonType == "tuple" => new TupleArgument(Items.Select((v, i) => v.ToArgument($"{where}[{i}]")).ToArray()),
            PythonValueKind.Sequence => Items.Select((v, i) => v.ToArgument($"{where}[{i}]")).ToArray(),
            PythonValueKind.Mapping => Entries.ToDictionary(
                e => e.Key.Kind == PythonValueKind.String ? e.Key.AsString()
                    : throw new UnsupportedArgumentException(typeof(PythonValue), where, $"a dict with a {e.Key.PythonType} key; dictionaries passed to Python need string keys"),
                e => e.Value.ToArgument($"{where}['{e.Key}']")),
            _ => AsRef(),
        };
    }

    private TensorData Typed<T>() where T : unmanaged
    {
        var data = AsTensorData();
        if (data.DType.ClrType != typeof(T))
            throw new ElementTypeMismatchException(typeof(T), data.DType.Name, data.DType.ClrType);
        return data;
    }
}
