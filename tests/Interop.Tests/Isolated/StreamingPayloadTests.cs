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
