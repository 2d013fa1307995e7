// Design notes: the binary hot path of the isolated-mode protocol (docs/isolated.md, "Binary calls";
// python/interop_helpers/protocol.py check_binary_request / encode_binary_reply is the worker side).
// - Only a call whose positional arguments are None, bool, int64, float or arrays (no keyword arguments, no strings,
//   containers or references) travels as a binary frame, and only its successful reply whose value is None, bool,
//   int64, float or one array comes back as one; everything else (hello, resolve, ping, shutdown, errors, other
//   values) stays JSON. A binary body starts with the magic "INB1"; a JSON body starts with "{".
// - The session frames hot-path calls straight from their arguments (BinaryCall.cs); TryFrame translates a request
//   built as JSON nodes, and both give the same bytes for the same call (tests compare them). The translation answers
//   null (JSON is sent) for anything it does not carry. All integers are little-endian; the dtype code is the row's index in DType.All.
// - The reply is read with bounds checks on every field (truncated frames, counts past the end, trailing bytes, tags,
//   dtype codes, padding): WorkerProtocolException, never a read outside the copied body. The region and extent checks
//   of arrays are WireValue's, shared with JSON replies.
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Isolated;

/// <summary>Binary frames of small calls and their replies.</summary>
internal static class WireBinary
{
    /// <summary>"INB1" as a little-endian word: the first four bytes of every binary body.</summary>
    public const uint Magic = 0x31424E49;

    public const byte OpCall = 1;
    public const byte ReplyOk = 1;
    public const int RequestHeaderSize = 40;
    public const int ReplyHeaderSize = 24;
    public const int ArrayDescriptorSize = 16;

    /// <summary>Reply flag: the reply's one result region is a request region of this process (the worker answered its result where the argument lies).</summary>
    public const ushort ReplyInRequest = 1;

    public const byte TagNone = 0, TagBool = 1, TagInt = 2, TagFloat = 3, TagTensor = 4, TagNDArray = 5, TagArray = 6;

    /// <summary>UTF-8 that throws on an unpaired surrogate (such text travels as JSON).</summary>
    internal static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);

    /// <summary>Whether a message body is a binary frame.</summary>
    public static bool IsBinary(ReadOnlySpan<byte> body) => body.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(body) == Magic;

    /// <summary>The dtype code of the wire: the row's index in the one dtype table.</summary>
    public static int CodeOf(DType dtype)
    {
        var all = DType.All;
        for (var i = 0; i < all.Count; i++)
        {
            if (ReferenceEquals(all[i], dtype))
                return i;
        }
        return -1;
    }

    // ---- requests ---------------------------------------------------------------------------------------------

    /// <summary>
    /// The binary frame (with its 4-byte length prefix, as <see cref="WireProtocol.Frame"/>) of a call request, or
    /// null when the request has anything the binary layout does not carry (then it travels as JSON).
    /// </summary>
    public static byte[]? TryFrame(JsonObject request)
    {
        try
        {
            return Build(request);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or EncoderFallbackException or OverflowException or ArgumentException)
        {
            return null; // a node of another shape than the session writes: JSON carries it (and the worker judges it)
        }
    }

    private static byte[]? Build(JsonObject request)
    {
        // Every key the session writes for such a call, and nothing else (an unknown key means JSON carries it).
        if (!request.TryGetPropertyValue("op", out var op) || Text(op) != "call" ||
            !request.TryGetPropertyValue("target", out var targetNode) || targetNode is not JsonObject target ||
            !request.TryGetPropertyValue("args", out var argsNode) || argsNode is not JsonArray args ||
            !request.TryGetPropertyValue("id", out var idNode))
            return null;
        var known = 4;
        byte grad = 0;
        if (request.TryGetPropertyValue("grad", out var gradNode))
        {
            known++;
            grad = Text(gradNode) switch { "default" => 0, "no_grad" => 1, "inference" => 2, _ => 255 };
            if (grad == 255)
                return null;
        }
        byte flags = 1;
        if (request.TryGetPropertyValue("export", out var export))
        {
            known++;
            if (export is not JsonObject e || e.Count != 2)
                return null;
            flags = (byte)((e["detach"]!.GetValue<bool>() ? 1 : 0) | (e["upcast"]!.GetValue<bool>() ? 2 : 0));
        }
        var regions = List(request, "regions", ref known);
        var drops = List(request, "drop_regions", ref known);
        var releases = List(request, "release_regions", ref known);
        var handles = List(request, "release_handles", ref known);
        if (request.Count != known)
            return null; // keyword arguments, or a key this layout does not carry
        byte baseCode = Text(target["base"]) switch { "module" => 0, "file" => 1, "handle" => 2, _ => 255 };
        if (baseCode == 255 || target["attrs"] is not JsonArray attrs || attrs.Count > ushort.MaxValue || args.Count > ushort.MaxValue ||
            regions.Count > ushort.MaxValue || drops.Count > ushort.MaxValue || releases.Count > ushort.MaxValue || handles.Count > ushort.MaxValue)
            return null;
        var name = baseCode == 2 ? "" : Text(target["name"]) ?? throw new FormatException();

        var body = new ArrayBufferWriterLite(RequestHeaderSize + 3 * name.Length + 64 * args.Count + 16 * attrs.Count + 8 * (releases.Count + drops.Count + handles.Count + 3 * regions.Count));
        body.U32(Magic);
        body.U8(OpCall);
        body.U8(grad);
        body.U8(flags);
        body.U8(baseCode);
        body.I64(Long(idNode));
        // The handle field: a handle's number, a file's generation (its LoadFile's, which calls must carry), 0 for a module.
        body.I64(baseCode switch { 2 => Long(target["handle"]), 1 when target["generation"] is { } generation => Long(generation), _ => 0 });
        body.U16(args.Count);
        body.U16(attrs.Count);
        var nameLength = body.Reserve(4);
        body.U16(regions.Count);
        body.U16(drops.Count);
        body.U16(releases.Count);
        body.U16(handles.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(body.At(nameLength, 4), (uint)body.Utf8(name));
        foreach (var attr in attrs)
        {
            var length = body.Reserve(2);
            BinaryPrimitives.WriteUInt16LittleEndian(body.At(length, 2), checked((ushort)body.Utf8(Text(attr) ?? throw new FormatException())));
        }
        foreach (var region in regions)
        {
            body.I64(Long(region!["id"]));
            body.I64(Long(region["fd"]));
            body.I64(Long(region["size"]));
        }
        foreach (var item in drops)
            body.I64(Long(item));
        foreach (var item in releases)
            body.I64(Long(item));
        foreach (var item in handles)
            body.I64(Long(item));
        foreach (var arg in args)
        {
            if (arg is not JsonObject value || !AddArgument(body, value))
                return null;
        }
        if (body.Length > ControlBlock.AreaSize)
            return null;
        return body.ToFrame();
    }

    private static readonly JsonArray s_empty = [];

    /// <summary>A housekeeping list of the request (counted in <paramref name="known"/>), or an empty one.</summary>
    private static JsonArray List(JsonObject request, string name, ref int known)
    {
        if (!request.TryGetPropertyValue(name, out var node))
            return s_empty;
        known++;
        return node as JsonArray ?? throw new FormatException();
    }

    private static bool AddArgument(ArrayBufferWriterLite body, JsonObject value)
    {
        switch (Text(value["t"]))
        {
            case "none" when value.Count == 1:
                body.U8(TagNone);
                return true;
            case "bool" when value.Count == 2:
                body.U8(TagBool);
                body.U8(value["v"]!.GetValue<bool>() ? (byte)1 : (byte)0);
                return true;
            case "int" when value.Count == 2:
                if (value["v"] is not JsonValue v || !TryLong(v, out var n))
                    return false; // a ulong above long.MaxValue: JSON
                body.U8(TagInt);
                body.I64(n);
                return true;
            case "float" when value.Count == 2:
                var text = Text(value["v"]) ?? throw new FormatException();
                body.U8(TagFloat);
                body.F64(text switch
                {
                    "NaN" => double.NaN,
                    "Infinity" => double.PositiveInfinity,
                    "-Infinity" => double.NegativeInfinity,
                    _ => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture),
                });
                return true;
            case var kind and ("tensor" or "ndarray" or "array") when value.Count == 5:
                if (DType.FromName(Text(value["dtype"]) ?? "") is not { } dtype || value["shape"] is not JsonArray shape || shape.Count > byte.MaxValue)
                    return false; // a name outside the table: JSON, and the worker names it
                var region = Long(value["region"]);
                if (region is < 0 or > uint.MaxValue)
                    return false;
                body.U8(kind switch { "tensor" => TagTensor, "ndarray" => TagNDArray, _ => TagArray });
                body.U8((byte)CodeOf(dtype));
                body.U8((byte)shape.Count);
                body.U16(0);
                body.U32((uint)region);
                body.I64(Long(value["offset"]));
                foreach (var d in shape)
                    body.I64(Long(d));
                return true;
            default:
                return false;
        }
    }

    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private static long Long(JsonNode? node) =>
        node is JsonValue v && TryLong(v, out var n) ? n : throw new FormatException("not a 64-bit integer");

    private static bool TryLong(JsonValue v, out long n)
    {
        if (v.TryGetValue(out n))
            return true;
        if (v.TryGetValue(out int i))
        {
            n = i;
            return true;
        }
        if (v.TryGetValue(out ulong u) && u <= long.MaxValue)
        {
            n = (long)u;
            return true;
        }
        return false;
    }

    /// <summary>A little growable little-endian writer (the frame's 4-byte length prefix is reserved up front).</summary>
    private sealed class ArrayBufferWriterLite(int capacity)
    {
        private byte[] _buffer = new byte[4 + capacity];
        private int _used = 4;

        public int Length => _used - 4;

        private Span<byte> Next(int n)
        {
            if (_used + n > _buffer.Length)
                Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _used + n));
            var span = _buffer.AsSpan(_used, n);
            _used += n;
            return span;
        }

        public void U8(byte b) => Next(1)[0] = b;
        public void U16(int v) => BinaryPrimitives.WriteUInt16LittleEndian(Next(2), checked((ushort)v));
        public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Next(4), v);
        public void I64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Next(8), v);
        public void F64(double v) => BinaryPrimitives.WriteDoubleLittleEndian(Next(8), v);

        /// <summary>Reserves <paramref name="n"/> bytes to fill in later (<see cref="At"/>); returns their position.</summary>
        public int Reserve(int n)
        {
            var at = _used;
            Next(n);
            return at;
        }

        public Span<byte> At(int position, int n) => _buffer.AsSpan(position, n);

        /// <summary>Writes <paramref name="text"/> as strict UTF-8 (an unpaired surrogate throws: JSON carries it); returns the byte count.</summary>
        public int Utf8(string text)
        {
            var n = Strict.GetByteCount(text);
            return Strict.GetBytes(text, Next(n));
        }

        public byte[] ToFrame()
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer, (uint)Length);
            return _used == _buffer.Length ? _buffer : _buffer[.._used];
        }
    }

    // ---- replies ----------------------------------------------------------------------------------------------

    /// <summary>
    /// Reads a binary reply body. Only its layout is checked here (bounds, tags, dtype codes, ranges of the region
    /// records); whether its regions and array extents are right is checked where the JSON reply's are.
    /// </summary>
    /// <exception cref="WorkerProtocolException">The frame is truncated, has trailing bytes, or a field is out of range.</exception>
    public static BinaryReply ReadReply(ReadOnlySpan<byte> body)
    {
        var r = new Reader(body);
        if (r.U32("the magic") != Magic)
            throw new WorkerProtocolException("a binary reply must start with its magic");
        var kind = r.U8("the reply kind");
        if (kind != ReplyOk)
            throw new WorkerProtocolException($"binary reply kind {kind} is not a successful reply");
        var tag = r.U8("the value tag");
        var flags = r.U16("the header flags");
        if ((flags & ~ReplyInRequest) != 0)
            throw new WorkerProtocolException($"binary reply flags {flags} name an unknown flag");
        var reply = new BinaryReply { Id = r.I64("the id"), ResultInRequest = (flags & ReplyInRequest) != 0 };
        int regions = r.U16("a count"), results = r.U16("a count"), closed = r.U16("a count"), retained = r.U16("a count");
        switch (tag)
        {
            case TagNone:
                reply.Value = new BinaryValue(WireKind.None);
                break;
            case TagBool:
                var b = r.U8("a bool value");
                if (b > 1)
                    throw new WorkerProtocolException($"a bool value byte must be 0 or 1, got {b}");
                reply.Value = new BinaryValue(WireKind.Bool) { Bool = b == 1 };
                break;
            case TagInt:
                reply.Value = new BinaryValue(WireKind.Int) { Int = r.I64("an int value") };
                break;
            case TagFloat:
                reply.Value = new BinaryValue(WireKind.Float) { Float = BitConverter.Int64BitsToDouble(r.I64("a float value")) };
                break;
            case TagTensor or TagNDArray:
                var code = r.U8("a dtype code");
                var rank = r.U8("a rank");
                if (r.U16("array padding") != 0)
                    throw new WorkerProtocolException("array descriptor padding must be zero");
                var region = r.U32("a region id");
                var offset = r.I64("an offset");
                if (code >= DType.All.Count || DType.All[code].NumPyName is null)
                    throw new WorkerProtocolException($"unknown or unsupported dtype code {code}");
                if (rank > WireProtocol.MaxRank)
                    throw new WorkerProtocolException($"rank {rank} exceeds {WireProtocol.MaxRank}");
                var shape = new long[rank];
                for (var i = 0; i < rank; i++)
                    shape[i] = r.I64("a dimension");
                reply.Value = new BinaryValue(tag == TagTensor ? WireKind.Tensor : WireKind.NDArray)
                {
                    DType = DType.All[code], Shape = shape, Region = region, Offset = offset,
                };
                break;
            default:
                throw new WorkerProtocolException($"unknown binary value tag {tag}");
        }
        reply.Regions = new (long Id, long Pid, long Fd, long Size)[regions];
        for (var i = 0; i < regions; i++)
            reply.Regions[i] = (r.I64("a region id"), r.I64("a region pid"), r.I64("a region fd"), r.I64("a region size"));
        reply.ResultRegions = r.I64s(results, "result_regions");
        reply.Closed = r.I64s(closed, "closed");
        reply.Retained = r.I64s(retained, "retained");
        if (r.Left != 0)
            throw new WorkerProtocolException($"a binary reply has {r.Left} bytes after its last field");
        return reply;
    }

    private ref struct Reader(ReadOnlySpan<byte> body)
    {
        private readonly ReadOnlySpan<byte> _body = body;
        private int _pos;

        public readonly int Left => _body.Length - _pos;

        private ReadOnlySpan<byte> Take(int n, string what)
        {
            if (n > _body.Length - _pos)
                throw new WorkerProtocolException($"a binary reply ends inside {what} ({n} bytes, {_body.Length - _pos} left)");
            var span = _body.Slice(_pos, n);
            _pos += n;
            return span;
        }

        public byte U8(string what) => Take(1, what)[0];
        public ushort U16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what));
        public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
        public long I64(string what) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, what));

        public long[] I64s(int count, string what)
        {
            if (count == 0)
                return [];
            if ((long)count * 8 > Left)
                throw new WorkerProtocolException($"a binary reply ends inside {what} ({count} entries, {Left} bytes left)");
            var items = new long[count];
            for (var i = 0; i < count; i++)
                items[i] = I64(what);
            return items;
        }
    }
}

/// <summary>A binary reply as read (layout checked; regions and extents are checked by the caller).</summary>
internal sealed class BinaryReply
{
    public long Id { get; init; }
    public BinaryValue Value { get; set; } = new(WireKind.None);
    public (long Id, long Pid, long Fd, long Size)[] Regions { get; set; } = [];
    public long[] ResultRegions { get; set; } = [];
    public bool ResultInRequest { get; init; }
    public long[] Closed { get; set; } = [];
    public long[] Retained { get; set; } = [];
}

/// <summary>The value of a binary reply.</summary>
internal sealed class BinaryValue(WireKind kind)
{
    public WireKind Kind { get; } = kind;
    public bool Bool { get; init; }
    public long Int { get; init; }
    public double Float { get; init; }
    public DType? DType { get; init; }
    public long[] Shape { get; init; } = [];
    public long Region { get; init; }
    public long Offset { get; init; }
}
