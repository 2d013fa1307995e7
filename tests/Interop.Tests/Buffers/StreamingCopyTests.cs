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
}
