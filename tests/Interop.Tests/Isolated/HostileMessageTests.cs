using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Interop.Embedding;
using Interop.Errors;
using Interop.Isolated;

namespace Interop.Tests.Isolated;

/// <summary>
/// Malformed and hostile messages in both directions: the receiver rejects them with a typed error before it reads
/// or writes any memory, and (for the worker) stays usable.
/// </summary>
[TestFixture]
[Category("isolated")]
[NonParallelizable]
public class HostileMessageTests
{
    // ---- worker -> host: replies the host must refuse ------------------------------------------------------

    private static WireValue DecodeArray(string json, long regionSize = 4096)
    {
        using var region = SharedRegion.CreateForRequests(1, regionSize);
        using var lease = new RegionLease(region, _ => { });
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 512 });
        return WireValue.Decode(doc.RootElement, lease, 0);
    }

    [TestCase("""{"t":"tensor","dtype":"float32","shape":[100],"offset":4000,"region":1}""", "runs past")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[1025],"offset":0,"region":1}""", "runs past")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[1],"offset":9223372036854775800,"region":1}""", "runs past")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[4294967296,4294967296],"offset":0,"region":1}""", "overflows")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[-1],"offset":0,"region":1}""", "negative")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[2],"offset":2,"region":1}""", "multiple of the item size")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[2],"offset":-64,"region":1}""", "offset")]
    [TestCase("""{"t":"tensor","dtype":"float128","shape":[2],"offset":0,"region":1}""", "unknown or unsupported dtype")]
    [TestCase("""{"t":"tensor","dtype":"bfloat16","shape":[2],"offset":0,"region":1}""", "unknown or unsupported dtype")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":[2],"offset":0,"region":2}""", "does not use")]
    [TestCase("""{"t":"tensor","dtype":"float32","shape":"2","offset":0,"region":1}""", "must be a list")]
    [TestCase("""{"t":"pickle","v":"..."}""", "unknown value type")]
    [TestCase("""{"t":"int","v":1.5}""", "must be an integer")]
    [TestCase("""{"t":"float","v":"one"}""", "not a number")]
    [TestCase("""{"t":"dict","keys":["a","b"],"items":[{"t":"none"}]}""", "2 keys but 1 items")]
    public void A_reply_that_points_outside_its_region_or_lies_about_types_is_refused(string json, string named)
    {
        var e = Assert.Throws<WorkerProtocolException>(() => DecodeArray(json))!;
        Assert.That(e.Message, Does.Contain(named));
    }

    [Test]
    public void A_reply_array_that_exactly_fills_the_region_is_accepted_and_its_span_is_the_region_tail()
    {
        using var region = SharedRegion.CreateForRequests(1, 4096);
        using var lease = new RegionLease(region, _ => { });
        using var doc = JsonDocument.Parse("""{"t":"tensor","dtype":"float64","shape":[2,4],"offset":4032,"region":1}""");
        var value = WireValue.Decode(doc.RootElement, lease, 0);
        Assert.That(value.Bytes.Length, Is.EqualTo(64));
        Assert.That(value.Address, Is.EqualTo(region.Address + 4032));
    }

    [Test]
    public void Deep_nesting_is_refused()
    {
        var json = string.Concat(Enumerable.Repeat("""{"t":"list","items":[""", 40)) + """{"t":"none"}""" + string.Concat(Enumerable.Repeat("]}", 40));
        Assert.Throws<WorkerProtocolException>(() => DecodeArray(json));
    }

    [TestCase(0u)]
    [TestCase((uint)WireProtocol.MaxMessage + 1)]
    [TestCase(uint.MaxValue)]
    public void A_frame_length_out_of_range_is_refused_before_allocating(uint length)
    {
        var frame = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, length);
        Assert.Throws<WorkerProtocolException>(() => WireProtocol.Read(new MemoryStream(frame)));
    }

    [TestCase("[1,2]", "JSON object")]
    [TestCase("{\"v\":2}", "version 2")]
    [TestCase("{\"op\":\"hello\"}", "missing")]
    [TestCase("{not json", "not valid JSON")]
    public void Envelopes_must_be_versioned_JSON_objects(string body, string named)
    {
        var e = Assert.Throws<WorkerProtocolException>(() => WireProtocol.Parse(Encoding.UTF8.GetBytes(body)))!;
        Assert.That(e.Message, Does.Contain(named));
    }

    [Test]
    public void A_slice_outside_a_region_is_refused()
    {
        using var region = SharedRegion.CreateForRequests(1, 4096);
        Assert.Multiple(() =>
        {
            Assert.Throws<WorkerProtocolException>(() => region.Slice(4090, 7));
            Assert.Throws<WorkerProtocolException>(() => region.Slice(-1, 1));
            Assert.Throws<WorkerProtocolException>(() => region.Slice(long.MaxValue, 1));
            Assert.That(region.Slice(4095, 1).Length, Is.EqualTo(1));
        });
    }

    // ---- binary replies (WireBinary) --------------------------------------------------------------------------

    /// <summary>A binary reply frame as the worker writes it: a float32 array of <paramref name="dims"/> in region 1.</summary>
    private static byte[] BinaryArrayReply(long offset = 0, long[]? dims = null, byte code = 11, byte tag = WireBinary.TagTensor,
                                           uint region = 1, long[]? results = null, (long, long, long, long)[]? regions = null)
    {
        dims ??= [4];
        results ??= [1];
        regions ??= [];
        var frame = new List<byte>();
        void U8(byte b) => frame.Add(b);
        void U16(int v) => frame.AddRange(BitConverter.GetBytes((ushort)v));
        void U32(uint v) => frame.AddRange(BitConverter.GetBytes(v));
        void I64(long v) => frame.AddRange(BitConverter.GetBytes(v));
        U32(WireBinary.Magic);
        U8(WireBinary.ReplyOk);
        U8(tag);
        U16(0);
        I64(7);
        U16(regions.Length);
        U16(results.Length);
        U16(0);
        U16(0);
        U8(code);
        U8((byte)dims.Length);
        U16(0);
        U32(region);
        I64(offset);
        foreach (var d in dims)
            I64(d);
        foreach (var (id, pid, fd, size) in regions)
        {
            I64(id);
            I64(pid);
            I64(fd);
            I64(size);
        }
        foreach (var r in results)
            I64(r);
        return frame.ToArray();
    }

    [Test]
    public void A_binary_reply_is_read_field_by_field()
    {
        var reply = WireBinary.ReadReply(BinaryArrayReply(offset: 64, dims: [2, 3]));
        Assert.That(reply.Id, Is.EqualTo(7));
        Assert.That(reply.Value.Kind, Is.EqualTo(WireKind.Tensor));
        Assert.That(reply.Value.DType, Is.SameAs(global::Interop.DTypes.DType.Float32), "code 11 is float32's row in the one table");
        Assert.That(reply.Value.Shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That((reply.Value.Region, reply.Value.Offset), Is.EqualTo((1L, 64L)));
        Assert.That(reply.ResultRegions, Is.EqualTo(new long[] { 1 }));
    }

    [Test]
    public void A_binary_reply_cut_short_anywhere_is_refused()
    {
        var frame = BinaryArrayReply(dims: [2, 3], regions: [(1, 1, 3, 4096)]);
        for (var length = 0; length < frame.Length; length++)
        {
            var e = Assert.Throws<WorkerProtocolException>(() => WireBinary.ReadReply(frame.AsSpan(0, length)), $"length {length}")!;
            Assert.That(e.Message, Does.Contain(length < 4 ? "magic" : "ends inside"), $"length {length}");
        }
        Assert.That(() => WireBinary.ReadReply([.. frame, 0]), Throws.TypeOf<WorkerProtocolException>().With.Message.Contains("after its last field"));
    }

    [TestCase(200, WireBinary.TagTensor, "dtype code 200")]
    [TestCase(10, WireBinary.TagTensor, "unsupported dtype code 10")] // bfloat16: NumPy cannot carry it
    [TestCase(11, 9, "unknown binary value tag 9")]
    [TestCase(11, WireBinary.TagArray, "unknown binary value tag 6")] // "array" is a request kind only
    public void A_binary_reply_with_an_unknown_tag_or_dtype_is_refused(int code, int tag, string named)
    {
        var e = Assert.Throws<WorkerProtocolException>(() => WireBinary.ReadReply(BinaryArrayReply(code: (byte)code, tag: (byte)tag)))!;
        Assert.That(e.Message, Does.Contain(named));
    }

    [Test]
    public void A_binary_reply_with_rank_33_padding_an_unknown_flag_or_a_bad_bool_is_refused()
    {
        Assert.That(() => WireBinary.ReadReply(BinaryArrayReply(dims: new long[33])), Throws.TypeOf<WorkerProtocolException>().With.Message.Contains("rank 33"));
        var padded = BinaryArrayReply();
        padded[26] = 1; // the array descriptor's padding
        Assert.That(() => WireBinary.ReadReply(padded), Throws.TypeOf<WorkerProtocolException>().With.Message.Contains("padding"));
        var header = BinaryArrayReply();
        Assert.That(WireBinary.ReadReply(header).ResultInRequest, Is.False);
        header[6] = (byte)WireBinary.ReplyInRequest; // the header's flags: the one flag there is
        Assert.That(WireBinary.ReadReply(header).ResultInRequest, Is.True);
        foreach (var (low, high) in new[] { (2, 0), (0, 1), (3, 0x80) })
        {
            (header[6], header[7]) = ((byte)low, (byte)high);
            Assert.That(() => WireBinary.ReadReply(header), Throws.TypeOf<WorkerProtocolException>().With.Message.Contains("unknown flag"));
        }
        byte[] boolReply = [.. BinaryArrayReply()[..24], 2];
        boolReply[5] = WireBinary.TagBool;
        boolReply[18] = 0; // no result regions
        Assert.That(() => WireBinary.ReadReply(boolReply), Throws.TypeOf<WorkerProtocolException>().With.Message.Contains("0 or 1"));
    }

    [TestCase(4000L, new long[] { 100 }, "runs past")]
    [TestCase(0L, new long[] { 1025 }, "runs past")]
    [TestCase(long.MaxValue - 7, new long[] { 1 }, "runs past")]
    [TestCase(0L, new long[] { 4294967296, 4294967296 }, "overflows")]
    [TestCase(0L, new long[] { -1 }, "negative")]
    [TestCase(2L, new long[] { 2 }, "multiple of the item size")]
    [TestCase(-64L, new long[] { 2 }, "offset")]
    public void A_binary_reply_array_outside_its_region_is_refused_by_the_same_checks_as_JSON(long offset, long[] dims, string named)
    {
        using var region = SharedRegion.CreateForRequests(1, 4096);
        using var lease = new RegionLease(region, _ => { });
        var reply = WireBinary.ReadReply(BinaryArrayReply(offset, dims));
        var e = Assert.Throws<WorkerProtocolException>(() => WireValue.FromBinary(reply.Value, lease))!;
        Assert.That(e.Message, Does.Contain(named));
        var other = WireBinary.ReadReply(BinaryArrayReply(region: 2));
        Assert.That(() => WireValue.FromBinary(other.Value, lease), Throws.TypeOf<WorkerProtocolException>().With.Message.Contains("does not use"));
        var exact = WireValue.FromBinary(WireBinary.ReadReply(BinaryArrayReply(4032, [2, 8])).Value, lease);
        Assert.That(exact.Bytes.Length, Is.EqualTo(64), "an array that ends exactly at the region's end is accepted");
    }

    // ---- binary requests: what the host sends as a binary frame, and what stays JSON --------------------------

    private static JsonObject Call(params JsonNode[] args) => new()
    {
        ["op"] = "call",
        ["id"] = 3L,
        ["target"] = new JsonObject { ["base"] = "file", ["name"] = "/tmp/m.py", ["attrs"] = new JsonArray("f") },
        ["args"] = new JsonArray(args),
    };

    [Test]
    public void Calls_with_scalar_and_array_arguments_travel_as_binary_frames_and_others_as_JSON()
    {
        var array = new JsonObject { ["t"] = "array", ["dtype"] = "float32", ["shape"] = new JsonArray(16L), ["offset"] = 0L, ["region"] = 1 };
        var frame = WireBinary.TryFrame(Call(array, new JsonObject { ["t"] = "float", ["v"] = "NaN" }, new JsonObject { ["t"] = "none" }));
        Assert.That(frame, Is.Not.Null);
        Assert.That(WireBinary.IsBinary(frame!.AsSpan(4)), Is.True);
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(frame), Is.EqualTo(frame!.Length - 4), "the length prefix");
        Assert.That(WireBinary.TryFrame(Call(new JsonObject { ["t"] = "str", ["v"] = "x" })), Is.Null, "a str argument");
        Assert.That(WireBinary.TryFrame(Call(new JsonObject { ["t"] = "int", ["v"] = ulong.MaxValue })), Is.Null, "a uint64 above int64");
        var kw = Call();
        kw["kw_names"] = new JsonArray("a");
        kw["kw_values"] = new JsonArray(new JsonObject { ["t"] = "none" });
        Assert.That(WireBinary.TryFrame(kw), Is.Null, "keyword arguments");
        var resolve = Call();
        resolve["op"] = "resolve";
        Assert.That(WireBinary.TryFrame(resolve), Is.Null, "other ops");
        var surrogate = Call();
        surrogate["target"]!["name"] = "/tmp/\udc80.py";
        Assert.That(WireBinary.TryFrame(surrogate), Is.Null, "a name that is not valid UTF-16 (JSON escapes it)");
    }

    // ---- host -> worker: requests a real worker must refuse ---------------------------------------------------

    private static WorkerProcess StartWorker() =>
        WorkerProcess.Start(TestPython.Executable, PythonRuntime.FindHelperDirectory(new PythonOptions())!, TimeSpan.FromSeconds(60), echoStderr: false);

    private static JsonObject LenCall(JsonObject argument) => new()
    {
        ["op"] = "call",
        ["target"] = new JsonObject { ["base"] = "module", ["name"] = "builtins", ["attrs"] = new JsonArray("len") },
        ["args"] = new JsonArray(argument),
    };

    private static JsonObject Array(string dtype, long[] shape, long offset, int region = 1) => new()
    {
        ["t"] = "ndarray",
        ["dtype"] = dtype,
        ["shape"] = new JsonArray(shape.Select(d => (JsonNode)d).ToArray()),
        ["offset"] = offset,
        ["region"] = region,
    };

    [Test]
    public void The_worker_refuses_hostile_requests_without_touching_memory_and_keeps_serving()
    {
        using var worker = StartWorker();
        var hostile = new (Func<int, JsonObject> Argument, string Named)[]
        {
            (r => Array("float32", [100], 1L << 20, r), "runs past"),
            (r => Array("float32", [(1L << 18) + 1], 0, r), "runs past"),
            (r => Array("float32", [1L << 40, 1L << 40], 0, r), "runs past"),
            (r => Array("float32", [1L << 50], 0, r), "dimension"),
            (r => Array("float32", [-1], 0, r), "dimension"),
            (r => Array("float32", [4], 2, r), "multiple of the item size"),
            (r => Array("complex256", [4], 0, r), "unknown or unsupported dtype"),
            (r => Array("bfloat16", [4], 0, r), "unknown or unsupported dtype"),
            (r => Array("float32", [4], 0, region: r + 1000), "not announced"),
            (_ => new JsonObject { ["t"] = "eval", ["v"] = "__import__('os')._exit(1)" }, "unknown value type"),
        };
        foreach (var (argument, named) in hostile)
        {
            var e = Assert.Throws<WorkerProtocolException>(() => worker.Exchange(
                context => LenCall(argument(context.RequestRegion(1 << 20).Id)), null, CancellationToken.None))!;
            Assert.That(e.Message, Does.Contain(named));
        }
        var fine = worker.Exchange(context => LenCall(Array("float32", [4], (1 << 20) - 16, context.RequestRegion(1 << 20).Id)), null, CancellationToken.None);
        Assert.That(fine.Value.IntValue, Is.EqualTo(4), "an array that ends exactly at the region's end is accepted");
        Assert.That(worker.IsAlive, Is.True);
    }

    [Test]
    public void The_worker_refuses_requests_with_a_wrong_version_or_unknown_op_and_keeps_serving()
    {
        using var worker = StartWorker();
        Assert.Throws<WorkerProtocolException>(() => worker.Exchange(_ => new JsonObject { ["op"] = "exec", ["code"] = "1" }, null, CancellationToken.None));
        Assert.Throws<WorkerProtocolException>(() => worker.Exchange(_ => new JsonObject { ["op"] = "call", ["target"] = "os.system" }, null, CancellationToken.None));
        Assert.Throws<WorkerProtocolException>(() => worker.Exchange(_ => new JsonObject { ["op"] = "call", ["target"] = new JsonObject { ["base"] = "handle", ["handle"] = 0 } }, null, CancellationToken.None));
        Assert.Throws<WorkerProtocolException>(() => worker.Exchange(_ => new JsonObject { ["op"] = "call", ["target"] = new JsonObject { ["base"] = "handle", ["handle"] = 12345 } }, null, CancellationToken.None));
        var ping = worker.Exchange(_ => new JsonObject { ["op"] = "ping" }, null, CancellationToken.None);
        Assert.That(ping.Value.Kind, Is.EqualTo(WireKind.None));
    }
}
