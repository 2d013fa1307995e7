using Interop.Buffers;

namespace Interop.Tests.Buffers;

/// <summary>The non-temporal copy that large payloads take into shared memory (Buffers/StreamingCopy.cs).</summary>
[TestFixture]
public class StreamingCopyTests
{
    [Test]
    public void Every_length_and_destination_alignment_copies_exactly_the_source_and_nothing_else(
        [Values(0, 1, 31, 255, 256, 257, 1000, 4096 + 77, 65536 + 3)] int length, [Values(0, 1, 17, 32, 63)] int skew)
    {
        // threshold 0: the streaming path wherever the CPU has AVX (its head, 128-byte body and tail all exercised).
        var source = new byte[length];
        new Random(length * 100 + skew).NextBytes(source);
        var destination = new byte[length + skew + 64];
        destination.AsSpan().Fill(0xA5);
        StreamingCopy.Copy(source, destination.AsSpan(skew), threshold: 0);
        Assert.Multiple(() =>
        {
            Assert.That(destination.AsSpan(skew, length).SequenceEqual(source), Is.True, "the copied bytes");
            Assert.That(destination.AsSpan(0, skew).ToArray(), Has.All.EqualTo(0xA5), "the bytes before");
            Assert.That(destination.AsSpan(skew + length).ToArray(), Has.All.EqualTo(0xA5), "the bytes after");
        });
    }

    [Test]
    public void A_destination_shorter_than_the_source_is_refused_before_anything_is_written()
    {
        var source = new byte[4096];
        var destination = new byte[4095];
        Assert.Throws<ArgumentOutOfRangeException>(() => StreamingCopy.Copy(source, destination, threshold: 0));
        Assert.That(destination, Has.All.EqualTo(0));
    }

    [TestCase("32768K", 32L << 20)]
    [TestCase("1M", 1L << 20)]
    [TestCase("512", 512L)]
    [TestCase("", null)]
    [TestCase("K", null)]
    [TestCase("-4K", null)]
    [TestCase("12X", null)]
    public void Sysfs_cache_sizes_parse(string text, long? expected) => Assert.That(StreamingCopy.ParseSize(text), Is.EqualTo(expected));

    [Test]
    public void The_threshold_is_a_quarter_of_the_last_level_cache_at_least_1_MiB_and_8_MiB_when_unknown()
    {
        Assert.Multiple(() =>
        {
            Assert.That(StreamingCopy.Threshold(32L << 20), Is.EqualTo(8L << 20));
            Assert.That(StreamingCopy.Threshold(256L << 10), Is.EqualTo(1L << 20));
            Assert.That(StreamingCopy.Threshold(null), Is.EqualTo(8L << 20));
        });
    }

    [Test]
    public void A_probing_copy_copies_exactly_the_source_whichever_kind_its_rest_takes(
        [Values(1, 65535, 65536, 65537, 300_000, (1 << 20) + 33)] int length, [Values(0, 7, 32)] int skew)
    {
        var source = new byte[length];
        new Random(length + skew).NextBytes(source);
        // More copies than ExploreEvery: the rest is streamed at least once (the first copy and every 16th) and, where the
        // probe costs no more than streaming, copied through the cache too.
        for (var i = 0; i < StreamingCopy.ExploreEvery + 2; i++)
        {
            var destination = new byte[length + skew + 64];
            destination.AsSpan().Fill(0x5A);
            StreamingCopy.CopyProbing(source, destination.AsSpan(skew));
            Assert.Multiple(() =>
            {
                Assert.That(destination.AsSpan(skew, length).SequenceEqual(source), Is.True, $"copy {i}: the copied bytes");
                Assert.That(destination.AsSpan(0, skew).ToArray(), Has.All.EqualTo(0x5A), $"copy {i}: the bytes before");
                Assert.That(destination.AsSpan(skew + length).ToArray(), Has.All.EqualTo(0x5A), $"copy {i}: the bytes after");
            });
        }
    }

    [Test]
    public void A_probing_copy_refuses_a_short_destination_before_writing()
    {
        var source = new byte[300_000];
        var destination = new byte[299_999];
        Assert.Throws<ArgumentOutOfRangeException>(() => StreamingCopy.CopyProbing(source, destination));
        Assert.That(destination, Has.All.EqualTo(0));
    }

    [TestCase(1.0, 0.0, false, true, TestName = "Streaming not measured yet: the rest streams (and is measured)")]
    [TestCase(1.0, 2.0, false, false, TestName = "The probe cost less than streaming: the rest goes through the cache")]
    [TestCase(3.0, 2.0, false, true, TestName = "The probe cost more (the reader's core held the lines): the rest streams")]
    [TestCase(1.0, 2.0, true, true, TestName = "Due for a new measure: the rest streams even when the cache looked cheaper")]
    public void The_probe_decides_the_rest(double probeCost, double streamingCost, bool explore, bool streams) =>
        Assert.That(StreamingCopy.StreamRest(probeCost, streamingCost, explore), Is.EqualTo(streams));
}
