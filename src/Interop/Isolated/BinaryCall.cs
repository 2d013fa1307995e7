// Design notes: a call of the binary hot path encoded straight from its arguments (docs/isolated.md, "Binary calls").
// - Only positional None, bool, integer (int64 range), floating-point and array arguments with no keyword arguments
//   take this path; anything else (strings, containers, references, results, in-process arrays, a value whose
//   conversion throws) makes TryCreate answer null and the session encodes the call as JSON, so every refusal and its
//   text comes from the one ArgumentEncoder.
// - The frame is the one WireBinary.TryFrame makes from the JSON request of the same call, byte for byte (tests
//   compare them); when the call does not fit the binary layout (counts, the control block's area, text that is not
//   UTF-8), Frame falls back to that JSON request, built from the same arguments.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Interop.Sessions;

namespace Interop.Isolated;

/// <summary>A small call framed without JSON nodes.</summary>
internal sealed class BinaryCall : WorkerProcess.OutgoingRequest
{
    private struct Argument
    {
        public byte Tag;
        public long Bits; // bool 0/1, int64, or the double's bits
        public TensorArgument? Array;
        public long Offset;
    }

    private readonly IsolatedSession.Target _target;
    private readonly CallOptions _options;
    private readonly Argument[] _args;
    private readonly byte _arrayTag;
    private readonly long _payloadBytes;
    private readonly bool _hasPayloads;
    private int _regionId;

    private BinaryCall(IsolatedSession.Target target, CallOptions options, Argument[] args, long payloadBytes, bool hasPayloads)
    {
        _target = target;
        _options = options;
        _args = args;
        _payloadBytes = payloadBytes;
        _hasPayloads = hasPayloads;
        _arrayTag = options.Arrays switch { ArrayConversion.NumPy => WireBinary.TagNDArray, ArrayConversion.Torch => WireBinary.TagTensor, _ => WireBinary.TagArray };
    }

    /// <summary>The call as a binary request, or null when any argument needs the JSON encoder (which also judges it).</summary>
    public static BinaryCall? TryCreate(IsolatedSession.Target target, IReadOnlyList<object?> args, CallOptions options)
    {
        if (options.KeywordArguments is { Count: > 0 } || args.Count > ushort.MaxValue)
            return null;
        var items = new Argument[args.Count];
        long total = 0;
        var hasPayloads = false;
        for (var i = 0; i < items.Length; i++)
        {
            ref var item = ref items[i];
            switch (args[i])
            {
                case null:
                    item.Tag = WireBinary.TagNone;
                    break;
                case bool b:
                    item.Tag = WireBinary.TagBool;
                    item.Bits = b ? 1 : 0;
                    break;
                case int n:
                    item.Tag = WireBinary.TagInt;
                    item.Bits = n;
                    break;
                case long n:
                    item.Tag = WireBinary.TagInt;
                    item.Bits = n;
                    break;
                case sbyte or byte or short or ushort or uint:
                    item.Tag = WireBinary.TagInt;
                    item.Bits = Convert.ToInt64(args[i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                case ulong u when u <= long.MaxValue: // above int64 the JSON request carries it
                    item.Tag = WireBinary.TagInt;
                    item.Bits = (long)u;
                    break;
                case double d:
                    SetFloat(ref item, d);
                    break;
                case float f:
                    SetFloat(ref item, f);
                    break;
                case Half h:
                    SetFloat(ref item, (double)h);
                    break;
                case string or ulong or ReadOnlyMemory<byte> or Memory<byte> or NumPy.NDArray or PythonValue or PythonRef:
                    return null;
                case var value:
                    TensorArgument? tensor;
                    try
                    {
                        if (!TensorArgument.TryCreate(value, out tensor))
                            return null;
                    }
                    catch (Exception)
                    {
                        return null; // the JSON encoder meets it again and reports it as it always has
                    }
                    if (tensor!.Shape.Count > ConversionLimits.MaxRank || tensor.DType.NumPyName is null)
                        return null;
                    total = WireProtocol.Align(total);
                    if (tensor.ByteLength > long.MaxValue - total)
                        return null;
                    item.Tag = 255; // the array tag of the options
                    item.Array = tensor;
                    item.Offset = total;
                    total += tensor.ByteLength;
                    hasPayloads = true;
                    break;
            }
        }
        return new BinaryCall(target, options, items, total, hasPayloads);
    }

    // As the JSON request carries it: the shortest round-trip text, which parses back to the same double (every NaN
    // to the one NaN).
    private static void SetFloat(ref Argument item, double value)
    {
        item.Tag = WireBinary.TagFloat;
        item.Bits = BitConverter.DoubleToInt64Bits(double.IsNaN(value) ? double.NaN : value);
    }

    public override void WritePayloads(WorkerProcess.RequestContext context)
    {
        if (_hasPayloads)
            WritePayloads(context.RequestRegion(_payloadBytes));
    }

    /// <summary>Copies every array into <paramref name="region"/> (as ArgumentEncoder.WritePayloads) and notes its id.</summary>
    internal void WritePayloads(SharedRegion region)
    {
        using var hold = region.Acquire();
        foreach (var item in _args)
        {
            if (item.Array is { } payload)
                ArgumentEncoder.CopyPayload(payload, region, item.Offset);
        }
        _regionId = region.Id;
    }

    public override byte[] Frame(long id, WorkerProcess.RequestContext context)
    {
        byte[]? frame;
        try
        {
            frame = TryWrite(id, context);
        }
        catch (EncoderFallbackException)
        {
            frame = null; // a name that is not UTF-8: the JSON request carries it, and the worker judges it
        }
        if (frame is not null)
            return frame;
        return WorkerProcess.JsonFrame(ToJson(), id, context);
    }

    /// <summary>The JSON request of this call (the session's layout, the encoder's argument nodes).</summary>
    internal JsonObject ToJson()
    {
        var args = new JsonArray();
        foreach (var item in _args)
        {
            args.Add(item.Tag switch
            {
                WireBinary.TagNone => new JsonObject { ["t"] = "none" },
                WireBinary.TagBool => new JsonObject { ["t"] = "bool", ["v"] = item.Bits != 0 },
                WireBinary.TagInt => new JsonObject { ["t"] = "int", ["v"] = item.Bits },
                WireBinary.TagFloat => new JsonObject { ["t"] = "float", ["v"] = WireProtocol.FloatText(BitConverter.Int64BitsToDouble(item.Bits)) },
                _ => new JsonObject
                {
                    ["t"] = _arrayTag switch { WireBinary.TagNDArray => "ndarray", WireBinary.TagTensor => "tensor", _ => "array" },
                    ["dtype"] = item.Array!.DType.Name,
                    ["shape"] = new JsonArray(item.Array.Shape.Select(d => (JsonNode)d).ToArray()),
                    ["offset"] = item.Offset,
                    ["region"] = _regionId,
                },
            });
        }
        return IsolatedSession.BuildRequest("call", _target, args, null, null, _options);
    }

    private byte[]? TryWrite(long id, WorkerProcess.RequestContext context)
    {
        var target = _target;
        byte baseCode = target.Base switch { "module" => 0, "file" => 1, "handle" => 2, _ => 255 };
        if (baseCode == 255 || (baseCode != 2 && target.Name is null))
            return null;
        var attrs = target.Attrs;
        var regions = context.NewRegions;
        var dropped = context.DroppedRegions;
        var released = context.ReleasedResults;
        var handles = context.ReleasedHandles;
        if (attrs.Length > ushort.MaxValue || regions.Count > ushort.MaxValue || dropped.Count > ushort.MaxValue ||
            released.Count > ushort.MaxValue || handles.Count > ushort.MaxValue)
            return null;
        var name = baseCode == 2 ? "" : target.Name!;
        var strict = WireBinary.Strict;
        long size = WireBinary.RequestHeaderSize + strict.GetByteCount(name) + 24L * regions.Count + 8L * (dropped.Count + released.Count + handles.Count);
        foreach (var attr in attrs)
        {
            var n = strict.GetByteCount(attr);
            if (n > ushort.MaxValue)
                return null;
            size += 2 + n;
        }
        foreach (var item in _args)
        {
            size += item.Tag switch
            {
                WireBinary.TagNone => 1,
                WireBinary.TagBool => 2,
                WireBinary.TagInt or WireBinary.TagFloat => 9,
                _ => 17 + 8L * item.Array!.Shape.Count,
            };
        }
        if (size > ControlBlock.AreaSize)
            return null;

        var frame = new byte[4 + size];
        var s = frame.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(s, (uint)size);
        BinaryPrimitives.WriteUInt32LittleEndian(s[4..], WireBinary.Magic);
        s[8] = WireBinary.OpCall;
        s[9] = _options.GradMode switch { GradMode.NoGrad => 1, GradMode.InferenceMode => 2, _ => 0 };
        s[10] = (byte)((_options.Export.Detach ? 1 : 0) | (_options.Export.Upcast ? 2 : 0));
        s[11] = baseCode;
        BinaryPrimitives.WriteInt64LittleEndian(s[12..], id);
        BinaryPrimitives.WriteInt64LittleEndian(s[20..], baseCode == 0 ? 0 : target.Handle); // a file's: its generation
        BinaryPrimitives.WriteUInt16LittleEndian(s[28..], (ushort)_args.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(s[30..], (ushort)attrs.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(s[36..], (ushort)regions.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(s[38..], (ushort)dropped.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(s[40..], (ushort)released.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(s[42..], (ushort)handles.Count);
        var at = 4 + WireBinary.RequestHeaderSize;
        var nameLength = strict.GetBytes(name, s[at..]);
        BinaryPrimitives.WriteUInt32LittleEndian(s[32..], (uint)nameLength);
        at += nameLength;
        foreach (var attr in attrs)
        {
            var n = strict.GetBytes(attr, s[(at + 2)..]);
            BinaryPrimitives.WriteUInt16LittleEndian(s[at..], (ushort)n);
            at += 2 + n;
        }
        foreach (var (rid, fd, rsize) in regions)
        {
            BinaryPrimitives.WriteInt64LittleEndian(s[at..], rid);
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 8)..], fd);
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 16)..], rsize);
            at += 24;
        }
        foreach (var d in dropped)
            at = I64(s, at, d);
        foreach (var r in released)
            at = I64(s, at, r);
        foreach (var h in handles)
            at = I64(s, at, h);
        foreach (var item in _args)
        {
            if (item.Array is not { } array)
            {
                s[at++] = item.Tag;
                if (item.Tag == WireBinary.TagBool)
                    s[at++] = (byte)item.Bits;
                else if (item.Tag != WireBinary.TagNone)
                    at = I64(s, at, item.Bits);
                continue;
            }
            var shape = array.Shape;
            s[at] = _arrayTag;
            s[at + 1] = (byte)WireBinary.CodeOf(array.DType);
            s[at + 2] = (byte)shape.Count;
            // two bytes of padding stay zero
            BinaryPrimitives.WriteUInt32LittleEndian(s[(at + 5)..], (uint)_regionId);
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 9)..], item.Offset);
            at += 17;
            for (var d = 0; d < shape.Count; d++)
                at = I64(s, at, shape[d]);
        }
        return at == frame.Length ? frame : throw new InvalidOperationException($"binary request size {at} != {frame.Length}");
    }

    private static int I64(Span<byte> s, int at, long value)
    {
        BinaryPrimitives.WriteInt64LittleEndian(s[at..], value);
        return at + 8;
    }
}
