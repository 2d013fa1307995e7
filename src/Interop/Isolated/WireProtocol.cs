// Design notes: the host side of the isolated-mode protocol (python/interop_helpers/protocol.py is the
// worker side). A frame is a 4-byte little-endian length and a UTF-8 JSON object (or, for small calls and
// their replies, a binary frame: WireBinary.cs). Everything a reply says
// is checked here before it is used: field types, ids, dtypes (the one table, DType), shapes, and that every
// array lies inside the region it names. Nothing reads or writes a mapping without SharedRegion.Slice's check.
using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Isolated;

/// <summary>Framing and validation of control messages.</summary>
internal static class WireProtocol
{
    public const int Version = 1;
    public const int MaxMessage = 64 << 20;
    public const int MaxRank = Sessions.ConversionLimits.MaxRank;
    public const int MaxDepth = Sessions.ConversionLimits.MaxDepth;
    public const int Alignment = 64;

    // Each nesting level of a value is two JSON levels (its object and its items array), plus the envelope.
    private static readonly JsonSerializerOptions s_serializerOptions = new() { MaxDepth = 2 * MaxDepth + 16 };

    public static void Write(Stream stream, JsonObject message)
    {
        stream.Write(Frame(message));
        stream.Flush();
    }

    /// <summary>The frame of <paramref name="message"/> (versioned); refuses it when it exceeds the limit, before anything is sent.</summary>
    public static byte[] Frame(JsonObject message)
    {
        message["v"] = Version;
        var body = JsonSerializer.SerializeToUtf8Bytes(message, s_serializerOptions);
        if (body.Length > MaxMessage)
            throw new WorkerProtocolException($"the request is {body.Length} bytes, above the {MaxMessage}-byte limit for control messages; pass large data as arrays (they travel in shared memory)");
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body.Length);
        body.CopyTo(frame.AsSpan(4));
        return frame;
    }

    /// <summary>Reads one frame; null at EOF (the worker is gone). Throws <see cref="WorkerProtocolException"/> on a bad frame.</summary>
    public static JsonElement? Read(Stream stream) => ReadBody(stream) is { } body ? Parse(body) : null;

    /// <summary>Reads one frame's body (JSON or binary, unparsed); null at EOF. Throws <see cref="WorkerProtocolException"/> on a bad length.</summary>
    public static byte[]? ReadBody(Stream stream)
    {
        Span<byte> header = stackalloc byte[4];
        if (!ReadExactly(stream, header, allowEof: true))
            return null;
        var length = BinaryPrimitives.ReadUInt32LittleEndian(header);
        if (length == 0 || length > MaxMessage)
            throw new WorkerProtocolException($"frame length {length} is outside 1..{MaxMessage}");
        var body = new byte[length];
        if (!ReadExactly(stream, body, allowEof: true))
            return null;
        return body;
    }

    /// <summary>Parses and checks the envelope of a message body (JSON object, protocol version).</summary>
    public static JsonElement Parse(ReadOnlySpan<byte> body)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(body.ToArray(), new JsonDocumentOptions { MaxDepth = 2 * MaxDepth + 16 });
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new WorkerProtocolException($"message is not valid JSON: {e.Message}");
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new WorkerProtocolException("a message must be a JSON object");
        var version = root.TryGetProperty("v", out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) ? n : -1;
        if (version != Version)
            throw new WorkerProtocolException($"protocol version {(version < 0 ? "missing" : version)} is not supported (this host speaks {Version})");
        return root;
    }

    private static bool ReadExactly(Stream stream, Span<byte> buffer, bool allowEof)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = stream.Read(buffer[done..]);
            if (n == 0)
            {
                if (allowEof)
                    return false;
                throw new WorkerProtocolException("the stream ended inside a message");
            }
            done += n;
        }
        return true;
    }

    // ---- field accessors that validate -----------------------------------------------------------------

    public static long Int(JsonElement obj, string name, long min = 0, long max = long.MaxValue)
    {
        if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Number ||
            !e.TryGetInt64(out var value) || value < min || value > max)
            throw new WorkerProtocolException($"field '{name}' must be an integer in {min}..{max}");
        return value;
    }

    public static string Str(JsonElement obj, string name)
    {
        if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.String)
            throw new WorkerProtocolException($"field '{name}' must be a string");
        return e.GetString()!;
    }

    public static string? OptionalStr(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;

    public static bool Bool(JsonElement obj, string name)
    {
        if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var e) || e.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw new WorkerProtocolException($"field '{name}' must be true or false");
        return e.GetBoolean();
    }

    public static JsonElement.ArrayEnumerator List(JsonElement obj, string name)
    {
        if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Array)
            throw new WorkerProtocolException($"field '{name}' must be a list");
        return e.EnumerateArray();
    }

    /// <summary>A list that may be left out (read as empty); present, it must be a list.</summary>
    public static JsonElement.ArrayEnumerator OptionalList(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && !obj.TryGetProperty(name, out _) ? s_emptyList.EnumerateArray() : List(obj, name);

    private static readonly JsonElement s_emptyList = JsonDocument.Parse("[]").RootElement.Clone();

    public static JsonElement Obj(JsonElement obj, string name)
    {
        if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Object)
            throw new WorkerProtocolException($"field '{name}' must be an object");
        return e;
    }

    public static string FloatText(double value) =>
        double.IsNaN(value) ? "NaN" : double.IsPositiveInfinity(value) ? "Infinity" : double.IsNegativeInfinity(value) ? "-Infinity"
        : value.ToString("R", CultureInfo.InvariantCulture);

    public static double ParseFloat(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
        : throw new WorkerProtocolException($"float value '{Clip(text)}' is not a number");

    public static string Clip(string text) => text.Length <= 80 ? text : text[..77] + "...";

    /// <summary>The dtype a message names, if the table has it and NumPy can carry it.</summary>
    public static DType CheckDType(string name) =>
        DType.FromName(name) is { NumPyName: not null } d ? d
        : throw new WorkerProtocolException($"unknown or unsupported dtype '{Clip(name)}'");

    /// <summary>Checks a shape and returns its element count and byte length (no overflow).</summary>
    public static (long Count, long Bytes) CheckShape(long[] shape, DType dtype)
    {
        if (shape.Length > MaxRank)
            throw new WorkerProtocolException($"rank {shape.Length} exceeds {MaxRank}");
        long count = 1;
        foreach (var d in shape)
        {
            if (d < 0)
                throw new WorkerProtocolException($"dimension {d} is negative");
            try
            {
                count = checked(count * d);
                _ = checked(count * dtype.ItemSize);
            }
            catch (OverflowException)
            {
                throw new WorkerProtocolException($"shape [{string.Join(", ", shape)}] overflows a 64-bit byte count");
            }
        }
        return (count, count * dtype.ItemSize);
    }

    public static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;
}
