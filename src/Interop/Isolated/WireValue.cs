// Design notes: values as they cross the isolated-mode protocol. Scalars, strings and containers travel in
// the JSON message; arrays and tensors travel in shared memory and the message carries their dtype, shape,
// region and offset. Decode checks every field (depth, dtype, shape, offset and extent inside the region)
// before any span over the mapping is made; Encode lays payloads out at aligned offsets and copies each
// .NET array once into the request region.
using System.Collections;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Interop.DTypes;
using Interop.Errors;
using Interop.Sessions;

namespace Interop.Isolated;

/// <summary>The kinds of value the protocol carries.</summary>
internal enum WireKind
{
    None, Bool, Int, Float, Str, List, Tuple, Dict, Tensor, NDArray, Object,
}

/// <summary>A decoded value of a reply.</summary>
internal sealed class WireValue
{
    public WireKind Kind { get; private init; }
    public bool BoolValue { get; private init; }
    public long IntValue { get; private init; }
    public double FloatValue { get; private init; }
    public string? StrValue { get; private init; }
    public IReadOnlyList<WireValue> Items { get; private init; } = [];
    public IReadOnlyList<string> Keys { get; private init; } = [];

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

    /// <summary>The bytes of a tensor or array inside its result region (checked when decoded).</summary>
    public Span<byte> Bytes => Lease!.Region.Slice(Offset, ByteLength);

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
            case "list" or "tuple":
                return new WireValue
                {
                    Kind = t == "list" ? WireKind.List : WireKind.Tuple,
                    Items = WireProtocol.List(e, "items").Select(i => Decode(i, lease, depth + 1)).ToArray(),
                };
            case "dict":
                var keys = WireProtocol.List(e, "keys").Select(k => k.ValueKind == JsonValueKind.String ? k.GetString()! : throw new WorkerProtocolException("dict keys must be strings")).ToArray();
                var items = WireProtocol.List(e, "items").Select(i => Decode(i, lease, depth + 1)).ToArray();
                if (keys.Length != items.Length)
                    throw new WorkerProtocolException($"dict has {keys.Length} keys but {items.Length} items");
                return new WireValue { Kind = WireKind.Dict, Keys = keys, Items = items };
            case "tensor" or "ndarray":
                return DecodeArray(e, t == "tensor" ? WireKind.Tensor : WireKind.NDArray, lease);
            case "object":
                return new WireValue
                {
                    Kind = WireKind.Object,
                    Handle = WireProtocol.Int(e, "handle"),
                    TypeName = WireProtocol.Str(e, "type"),
                    Repr = WireProtocol.Str(e, "repr"),
                };
            default:
                throw new WorkerProtocolException($"unknown value type '{WireProtocol.Clip(t)}'");
        }
    }

    private static WireValue DecodeArray(JsonElement e, WireKind kind, RegionLease? lease)
    {
        var dtype = WireProtocol.CheckDType(WireProtocol.Str(e, "dtype"));
        var shape = WireProtocol.List(e, "shape").Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out var n) ? n
            : throw new WorkerProtocolException("dimensions must be integers")).ToArray();
        var (_, bytes) = WireProtocol.CheckShape(shape, dtype);
        var offset = WireProtocol.Int(e, "offset");
        var region = WireProtocol.Int(e, "region", 0, int.MaxValue);
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

    public ArgumentEncoder(Func<object, JsonObject?>? custom = null) => _custom = custom;

    public JsonObject Encode(object? value, int depth = 0)
    {
        if (depth > WireProtocol.MaxDepth)
            throw new ArgumentException($"arguments are nested deeper than {WireProtocol.MaxDepth}");
        switch (value)
        {
            case null:
                return new JsonObject { ["t"] = "none" };
            case bool b:
                return new JsonObject { ["t"] = "bool", ["v"] = b };
            case sbyte or byte or short or ushort or int or uint or long:
                return new JsonObject { ["t"] = "int", ["v"] = Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture) };
            case ulong u when u <= long.MaxValue:
                return new JsonObject { ["t"] = "int", ["v"] = (long)u };
            case float or double:
                return new JsonObject { ["t"] = "float", ["v"] = WireProtocol.FloatText(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)) };
            case Half h: // not IConvertible
                return new JsonObject { ["t"] = "float", ["v"] = WireProtocol.FloatText((double)h) };
            case string s:
                return new JsonObject { ["t"] = "str", ["v"] = s };
        }
        if (_custom?.Invoke(value) is { } custom)
            return custom;
        if (TensorArgument.TryCreate(value, out var tensor))
            return AddArray(tensor!);
        switch (value)
        {
            case IDictionary dict:
                var keys = new JsonArray();
                var items = new JsonArray();
                foreach (DictionaryEntry entry in dict)
                {
                    keys.Add(entry.Key as string ?? throw new ArgumentException("dictionary keys passed to Python must be strings"));
                    items.Add(Encode(entry.Value, depth + 1));
                }
                return new JsonObject { ["t"] = "dict", ["keys"] = keys, ["items"] = items };
            case ITuple tuple:
                return new JsonObject { ["t"] = "tuple", ["items"] = new JsonArray(Enumerable.Range(0, tuple.Length).Select(i => (JsonNode)Encode(tuple[i], depth + 1)).ToArray()) };
            case IEnumerable list:
                return new JsonObject { ["t"] = "list", ["items"] = new JsonArray(list.Cast<object?>().Select(i => (JsonNode)Encode(i, depth + 1)).ToArray()) };
        }
        throw new ArgumentException("the isolated worker cannot receive it");
    }

    private JsonObject AddArray(TensorArgument payload)
    {
        if (payload.DType.NumPyName is null)
            throw new ArgumentException($"{payload.DType.Name} tensors cannot travel through NumPy; convert them to float32 first");
        _total = WireProtocol.Align(_total);
        var node = new JsonObject
        {
            ["t"] = "tensor",
            ["dtype"] = payload.DType.Name,
            ["shape"] = new JsonArray(payload.Shape.Select(d => (JsonNode)d).ToArray()),
            ["offset"] = _total,
        };
        _arrays.Add((node, payload));
        _total = checked(_total + (payload.ElementCount * payload.DType.ItemSize));
        return node;
    }

    /// <summary>Total payload bytes (0 when no array was encoded).</summary>
    public long PayloadBytes => _total;

    /// <summary>Copies every payload into <paramref name="region"/> (one copy each) and fills in the region id.</summary>
    public void WritePayloads(SharedRegion region)
    {
        foreach (var (node, payload) in _arrays)
        {
            var offset = (long)node["offset"]!;
            payload.CopyTo(region.Slice(offset, checked((int)(payload.ElementCount * payload.DType.ItemSize)))); // one copy, also for strided memory
            node["region"] = region.Id;
        }
    }

    public bool HasPayloads => _arrays.Count > 0;
}
