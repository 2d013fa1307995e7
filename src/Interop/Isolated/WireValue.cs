// Design notes: values as they cross the isolated-mode protocol. Scalars, strings and containers travel in
// the JSON message; arrays and tensors travel in shared memory and the message carries their dtype, shape,
// region and offset. Decode checks every field (depth, dtype, shape, offset and extent inside the region)
// before any span over the mapping is made; Encode lays payloads out at aligned offsets and copies each
// .NET array once into the request region.
using System.Collections;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Interop.Buffers;
using Interop.DTypes;
using Interop.Errors;
using Interop.Sessions;

namespace Interop.Isolated;

/// <summary>The kinds of value the protocol carries.</summary>
internal enum WireKind
{
    None, Bool, Int, Float, Str, List, Tuple, Dict, Tensor, NDArray, Object, Bytes,
}

/// <summary>A decoded value of a reply.</summary>
internal sealed class WireValue
{
    public WireKind Kind { get; private init; }
    public bool BoolValue { get; private init; }
    public long IntValue { get; private init; }
    public double FloatValue { get; private init; }
    public string? StrValue { get; private init; }
    public byte[]? BytesValue { get; private init; }
    public IReadOnlyList<WireValue> Items { get; private init; } = [];
    public IReadOnlyList<string> Keys { get; private init; } = [];
    public IReadOnlyList<WireValue>? KeyValues { get; private init; } // dict keys that are not all strings

    // tensors and arrays
    public DType? DType { get; private init; }
    public long[] Shape { get; private init; } = [];
    public long Offset { get; private init; }
    public long ByteLength { get; private init; }
    public RegionLease? Lease { get; private init; }

    // objects
    public long Handle { get; private init; }
    public string TypeName { get; private init; } = "";
    public string Repr { get; private init; } = "";

    /// <summary>The bytes of a tensor or array inside its result region (checked when decoded; a span holds at most 2 GiB - 1).</summary>
    public Span<byte> Bytes => Lease!.Region.Slice(Offset, checked((int)ByteLength));

    /// <summary>The address of the first element (inside the mapping).</summary>
    public nint Address => Lease!.Region.Address + (nint)Offset;

    public static WireValue Decode(JsonElement e, RegionLease? lease, int depth)
    {
        if (depth > WireProtocol.MaxDepth)
            throw new WorkerProtocolException($"values are nested deeper than {WireProtocol.MaxDepth}");
        var t = WireProtocol.Str(e, "t");
        switch (t)
        {
            case "none":
                return new WireValue { Kind = WireKind.None };
            case "bool":
                return new WireValue { Kind = WireKind.Bool, BoolValue = WireProtocol.Bool(e, "v") };
            case "int":
                return new WireValue { Kind = WireKind.Int, IntValue = WireProtocol.Int(e, "v", long.MinValue) };
            case "float":
                return new WireValue { Kind = WireKind.Float, FloatValue = WireProtocol.ParseFloat(WireProtocol.Str(e, "v")) };
            case "str":
                return new WireValue { Kind = WireKind.Str, StrValue = WireProtocol.Str(e, "v") };
            case "bytes":
                try
                {
                    return new WireValue { Kind = WireKind.Bytes, BytesValue = Convert.FromBase64String(WireProtocol.Str(e, "v")) };
                }
                catch (FormatException)
                {
                    throw new WorkerProtocolException("a bytes value must be base64");
                }
            case "list" or "tuple":
                return new WireValue
                {
                    Kind = t == "list" ? WireKind.List : WireKind.Tuple,
                    Items = WireProtocol.List(e, "items").Select(i => Decode(i, lease, depth + 1)).ToArray(),
                };
            case "dict":
                var keys = WireProtocol.List(e, "keys").Select(k => k.ValueKind == JsonValueKind.String ? k.GetString()! : throw new WorkerProtocolException("dict keys must be strings")).ToArray();
                var items = WireProtocol.List(e, "items").Select(i => Decode(i, lease, depth + 1)).ToArray();
                WireValue[]? keyValues = null;
                if (e.TryGetProperty("key_values", out _))
                {
                    // Keys that are not all strings travel as values; "keys" is then empty.
                    keyValues = WireProtocol.List(e, "key_values").Select(k => Decode(k, lease, depth + 1)).ToArray();
                    if (keys.Length != 0 || keyValues.Length != items.Length)
                        throw new WorkerProtocolException($"dict has {keyValues.Length} key values and {keys.Length} keys but {items.Length} items");
                }
                else if (keys.Length != items.Length)
                    throw new WorkerProtocolException($"dict has {keys.Length} keys but {items.Length} items");
                return new WireValue { Kind = WireKind.Dict, Keys = keys, KeyValues = keyValues, Items = items };
            case "tensor" or "ndarray":
                return DecodeArray(e, t == "tensor" ? WireKind.Tensor : WireKind.NDArray, lease);
            case "object":
                return new WireValue
                {
                    Kind = WireKind.Object,
                    Handle = WireProtocol.Int(e, "handle"),
                    TypeName = TypeNameOf(WireProtocol.Str(e, "type")),
                    Repr = WireProtocol.Str(e, "repr"),
                };
            default:
                throw new WorkerProtocolException($"unknown value type '{WireProtocol.Clip(t)}'");
        }
    }

    // The worker sends module.qualname; drop "builtins." as the in-process session does (PythonErrors.QualifiedName).
    private static string TypeNameOf(string name) => name.StartsWith("builtins.", StringComparison.Ordinal) ? name["builtins.".Length..] : name;

    private static WireValue DecodeArray(JsonElement e, WireKind kind, RegionLease? lease)
    {
        var dtype = WireProtocol.CheckDType(WireProtocol.Str(e, "dtype"));
        var shape = WireProtocol.List(e, "shape").Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out var n) ? n
            : throw new WorkerProtocolException("dimensions must be integers")).ToArray();
        return CheckedArray(kind, dtype, shape, WireProtocol.Int(e, "offset"), WireProtocol.Int(e, "region", 0, int.MaxValue), lease);
    }

    /// <summary>The value of a binary reply (<see cref="WireBinary"/>), with the same checks as a JSON one.</summary>
    public static WireValue FromBinary(BinaryValue value, RegionLease? lease) => value.Kind switch
    {
        WireKind.None => new WireValue { Kind = WireKind.None },
        WireKind.Bool => new WireValue { Kind = WireKind.Bool, BoolValue = value.Bool },
        WireKind.Int => new WireValue { Kind = WireKind.Int, IntValue = value.Int },
        WireKind.Float => new WireValue { Kind = WireKind.Float, FloatValue = value.Float },
        WireKind.Tensor or WireKind.NDArray => CheckedArray(value.Kind, value.DType!, value.Shape,
            value.Offset >= 0 ? value.Offset : throw new WorkerProtocolException($"field 'offset' must be an integer in 0..{long.MaxValue}"),
            value.Region <= int.MaxValue ? value.Region : throw new WorkerProtocolException($"field 'region' must be an integer in 0..{int.MaxValue}"), lease),
        _ => throw new WorkerProtocolException($"unexpected value kind {value.Kind}"),
    };

    /// <summary>An array value after its checks: shape (rank, signs, overflow), region, alignment, extent inside the region.</summary>
    private static WireValue CheckedArray(WireKind kind, DType dtype, long[] shape, long offset, long region, RegionLease? lease)
    {
        var (_, bytes) = WireProtocol.CheckShape(shape, dtype);
        if (lease is null || lease.Region.Id != region)
            throw new WorkerProtocolException($"array refers to region {region}, which this reply does not use");
        if (offset % dtype.ItemSize != 0)
            throw new WorkerProtocolException($"offset {offset} is not a multiple of the item size {dtype.ItemSize}");
        if (offset > lease.Region.Size || bytes > lease.Region.Size - offset)
            throw new WorkerProtocolException($"array of {bytes} bytes at offset {offset} runs past the {lease.Region.Size}-byte region");
        return new WireValue { Kind = kind, DType = dtype, Shape = shape, Offset = offset, ByteLength = bytes, Lease = lease };
    }
}

/// <summary>Encodes call arguments: JSON for the message, payloads copied once into the request region.</summary>
internal sealed class ArgumentEncoder
{
    private readonly List<(JsonObject Node, TensorArgument Payload)> _arrays = [];
    private long _total;
    private readonly Func<object, JsonObject?>? _custom;
    private readonly string _arrayKind;

    public ArgumentEncoder(Func<object, JsonObject?>? custom = null, ArrayConversion arrays = ArrayConversion.Default)
    {
        _custom = custom;
        _arrayKind = arrays switch { ArrayConversion.NumPy => "ndarray", ArrayConversion.Torch => "tensor", _ => "array" };
    }

    /// <summary>Encodes one argument at nesting <paramref name="depth"/> (<paramref name="where"/> names its position in errors).</summary>
    public JsonObject Encode(object? value, string where, int depth = 0) => Encode(value, where, depth, []);

    private JsonObject Encode(object? value, string where, int depth, List<object> open)
    {
        ConversionLimits.CheckDepth(value, depth, where);
        switch (value)
        {
            case null:
                return new JsonObject { ["t"] = "none" };
            case bool b:
                return new JsonObject { ["t"] = "bool", ["v"] = b };
            case sbyte or byte or short or ushort or int or uint or long:
                return new JsonObject { ["t"] = "int", ["v"] = Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture) };
            case ulong u:
                return new JsonObject { ["t"] = "int", ["v"] = u }; // the protocol's ints span int64 and uint64
            case float or double:
                return new JsonObject { ["t"] = "float", ["v"] = WireProtocol.FloatText(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)) };
            case Half h: // not IConvertible
                return new JsonObject { ["t"] = "float", ["v"] = WireProtocol.FloatText((double)h) };
            case string s:
                ConversionLimits.CheckText(s, where);
                return new JsonObject { ["t"] = "str", ["v"] = s };
            case ReadOnlyMemory<byte> bytes:
                return new JsonObject { ["t"] = "bytes", ["v"] = Convert.ToBase64String(bytes.Span) };
            case Memory<byte> bytes:
                return new JsonObject { ["t"] = "bytes", ["v"] = Convert.ToBase64String(bytes.Span) };
            case NumPy.NDArray array: // in-process NumPy array: a copy that arrives as a numpy.ndarray, as in-process
                return AddArray(TensorArgument.CopyOf(array), "ndarray");
            case PythonValue result: // a result passed back: the same rule in every session kind (PythonValue.ToArgument)
                return Encode(result.ToArgument(where), where, depth, open);
        }
        if (_custom?.Invoke(value) is { } custom)
            return custom;
        if (TensorArgument.TryCreate(value, out var tensor))
        {
            ConversionLimits.CheckRank(tensor!, value.GetType(), where);
            return AddArray(tensor!);
        }
        if (value is Array { Rank: > 1 })
            throw new UnsupportedArgumentException(value.GetType(), where, "a multi-dimensional array of an element type outside the dtype table");
        if (value is not (IDictionary or ITuple or IEnumerable))
            throw new ArgumentException("the isolated worker cannot receive it");
        ConversionLimits.CheckCycle(value, where, open);
        open.Add(value);
        try
        {
            switch (value)
            {
                case IDictionary dict:
                    var keys = new JsonArray();
                    var items = new JsonArray();
                    foreach (DictionaryEntry entry in dict)
                    {
                        if (entry.Key is not string key)
                            throw new UnsupportedArgumentException(entry.Key.GetType(), where + " (a dictionary key)", "dictionary keys must be strings");
                        ConversionLimits.CheckText(key, where + " (a dictionary key)");
                        keys.Add(key);
                        items.Add(Encode(entry.Value, $"{where}['{key}']", depth + 1, open));
                    }
                    return new JsonObject { ["t"] = "dict", ["keys"] = keys, ["items"] = items };
                case ITuple tuple:
                    return new JsonObject { ["t"] = "tuple", ["items"] = new JsonArray(Enumerable.Range(0, tuple.Length).Select(i => (JsonNode)Encode(tuple[i], $"{where}[{i}]", depth + 1, open)).ToArray()) };
                default:
                    var list = new JsonArray();
                    foreach (var item in (IEnumerable)value)
                        list.Add(Encode(item, $"{where}[{list.Count}]", depth + 1, open));
                    return new JsonObject { ["t"] = "list", ["items"] = list };
            }
        }
        finally
        {
            open.RemoveAt(open.Count - 1);
        }
    }

    private JsonObject AddArray(TensorArgument payload, string? kind = null)
    {
        if (payload.DType.NumPyName is null)
            throw new ArgumentException($"{payload.DType.Name} tensors cannot travel through NumPy; convert them to float32 first");
        _total = WireProtocol.Align(_total);
        var node = new JsonObject
        {
            ["t"] = kind ?? _arrayKind,
            ["dtype"] = payload.DType.Name,
            ["shape"] = new JsonArray(payload.Shape.Select(d => (JsonNode)d).ToArray()),
            ["offset"] = _total,
        };
        _arrays.Add((node, payload));
        _total = checked(_total + payload.ByteLength);
        return node;
    }

    /// <summary>Total payload bytes (0 when no array was encoded).</summary>
    public long PayloadBytes => _total;

    /// <summary>The copy's unit: spans are int-sized, payloads are not (a float32 tensor of 2^29 + 1 elements is over 2 GiB).</summary>
    internal const int CopyChunk = 64 << 20;

    /// <summary>Copies every payload into <paramref name="region"/> (one copy each, in chunks) and fills in the region id.</summary>
    /// <remarks>Holds a reference to the region for the whole copy, so nothing unmaps it meanwhile (see SharedRegion).</remarks>
    public void WritePayloads(SharedRegion region)
    {
        using var hold = region.Acquire();
        foreach (var (node, payload) in _arrays)
        {
            CopyPayload(payload, region, (long)node["offset"]!);
            node["region"] = region.Id;
        }
    }

    /// <summary>Copies one payload into <paramref name="region"/> at <paramref name="offset"/> (the caller holds the region).</summary>
    internal static void CopyPayload(TensorArgument payload, SharedRegion region, long offset)
    {
        var length = payload.ByteLength;
        // Large payloads bypass the cache, middling ones take the kind of copy measured faster (Buffers/StreamingCopy.cs).
        if (payload.IsStrided && length <= CopyChunk)
            payload.CopyTo(region.Slice(offset, (int)length)); // one copy: gathered straight into the region
        else
            for (long done = 0; done < length;)
            {
                var n = (int)Math.Min(CopyChunk, length - done); // CopyChunk is a multiple of every item size
                if (payload.IsStrided)
                    payload.CopyRangeTo(done, region.Slice(offset + done, n)); // gathered straight into the region, in chunks (over 2 GiB: no span holds it)
                else
                    StreamingCopy.CopyShared(payload.Chunk(done, n), region.Slice(offset + done, n), length);
                done += n;
            }
    }

    public bool HasPayloads => _arrays.Count > 0;
}
