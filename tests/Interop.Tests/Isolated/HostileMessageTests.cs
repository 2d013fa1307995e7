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
