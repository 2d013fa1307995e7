using Interop.Buffers;
using Interop.Isolated;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>Payloads above the streaming threshold (Buffers/StreamingCopy.cs) on both sides of an isolated call.</summary>
[TestFixture]
[Category("isolated")]
[Category("torch")]
[NonParallelizable]
public class StreamingPayloadTests
{
    private const string Tunable = "glibc.cpu.x86_non_temporal_threshold";

    [TearDown]
    public void NothingLeftBehind() => Assert.That(ShmLeftovers(Environment.ProcessId), Is.Empty);

    [Test]
    public void A_payload_above_the_threshold_arrives_whole_and_its_copied_result_comes_back_whole()
    {
        // Not a multiple of the 128-byte step, so the streaming loop's tail is part of the payload too.
        var count = checked((int)(StreamingCopy.StreamingThreshold / sizeof(float)) + 1027);
        var input = new float[count];
        for (var i = 0; i < count; i++)
            input[i] = i * 0.5f - 3;
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using (var check = fixture.GetAttr("pattern_check").Call(input))
            Assert.That(check.AsInt64(), Is.EqualTo(-1), "the first element the worker saw wrong");
        // t * 1.0: a new tensor that the worker copies into a result region (its memcpy streams at this size).
        using var result = fixture.GetAttr("scale").Call(input, 1.0);
        var values = result.AsReadOnlySpan<float>();
        Assert.That(values.Length, Is.EqualTo(count));
        Assert.That(values.SequenceEqual(input), Is.True, "the result read in place");
    }

    [Test]
    public void Small_payloads_take_two_request_regions_in_turn_and_large_ones_one()
    {
        // The host must not write the lines the worker has just read (WorkerProcess._requestRegions says why): calls
        // up to AlternateLimit alternate between two regions; every call still sees its own values.
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var where = fixture.GetAttr("data_address");
        var small = new List<long>();
        for (var call = 0; call < 6; call++)
        {
            using var seen = where.Call(new float[] { call, 1, 2, 3 });
            var items = seen.Items;
            Assert.That(items[1].AsDouble(), Is.EqualTo(call), $"call {call} saw its own argument");
            small.Add(items[0].AsInt64());
        }
        Assert.That(small.Distinct().Count(), Is.EqualTo(2), "two regions");
        for (var call = 2; call < 6; call++)
            Assert.That(small[call], Is.EqualTo(small[call - 2]).And.Not.EqualTo(small[call - 1]), $"call {call} alternates");
        var big = new float[(WorkerProcess.AlternateLimit / sizeof(float)) + 16];
        var large = new List<long>();
        for (var call = 0; call < 3; call++)
        {
            big[0] = call;
            using var seen = where.Call(big);
            Assert.That(seen.Items[1].AsDouble(), Is.EqualTo(call));
            large.Add(seen.Items[0].AsInt64());
        }
        Assert.That(large.Distinct().Count(), Is.EqualTo(1), "one region above the limit");
    }

    [Test]
    public void Workers_get_the_streaming_threshold_in_their_glibc_tunables()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var value = fixture.GetAttr("environment").Call("GLIBC_TUNABLES");
        Assert.That(value.AsString().Split(':'), Does.Contain($"{Tunable}={StreamingCopy.StreamingThreshold}"));
    }

    [Test]
    public void A_threshold_the_user_set_is_kept_and_other_tunables_are_kept_beside_ours()
    {
        var ours = $"{Tunable}={StreamingCopy.StreamingThreshold}";
        Assert.Multiple(() =>
        {
            Assert.That(WorkerProcess.WorkerTunables(null), Is.EqualTo(ours));
            Assert.That(WorkerProcess.WorkerTunables(""), Is.EqualTo(ours));
            Assert.That(WorkerProcess.WorkerTunables("glibc.malloc.arena_max=2"), Is.EqualTo("glibc.malloc.arena_max=2:" + ours));
            Assert.That(WorkerProcess.WorkerTunables($"glibc.malloc.arena_max=2:{Tunable}=65536"), Is.EqualTo($"glibc.malloc.arena_max=2:{Tunable}=65536"));
        });
    }
}
