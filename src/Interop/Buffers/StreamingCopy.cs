// Design notes: copies into shared memory that another process reads next (isolated mode, issue 15).
// - A copy through the cache (glibc's memmove below its non-temporal threshold: 24 MiB on Debian 13, 240 MiB on Debian 12
//   here; .NET's Buffer.Memmove ends in it) makes every destination line a read-for-ownership, then a dirty line this
//   core must write back later. When a round trip's working set (the .NET array, the request region, the result
//   region: about 3 x the payload) is larger than the last-level cache, those lines are evicted before anyone reads
//   them: measured on the 2-core VM with a 32 MiB L3, the worker's 16 MiB copy into a result region took 2.05 ms through
//   the cache and 1.19 ms with non-temporal stores. Below that size the cache wins (1 MiB: 29 us against 45 us): the
//   reader finds the lines in the shared L3.
// - So copies of at least StreamingThreshold bytes (a quarter of the last-level cache, 8 MiB when it is unknown) use
//   non-temporal stores: here for the host's payloads, and in the worker through glibc's own tunable
//   (WorkerProcess.Start sets glibc.cpu.x86_non_temporal_threshold to the same value).
// - Between AdaptiveMinimum and StreamingThreshold the faster way depends on the machine, and is measured (CopyShared):
//   writing lines the other process's core read in the previous round first takes them back from that core's cache.
//   On one 2-core VM (2026-11-30) that cost little once the host alternated two request regions (1 MiB: 23 us, a
//   plain memcpy's speed); on another of the same type (2026-12-01; a cache-line round trip between its cores took
//   450-480 ns) a cached 1 MiB write into lines the other core had read took 127-141 us with one buffer and still 100
//   us with eight, while this file's non-temporal stores took 22 us (bench: `bulk` prints these figures first).
//   And it depends on the callee: one that never reads its argument leaves the lines with the host, whose cached writes
//   then run at memcpy speed (20 us). So such a copy writes its first 64 KiB through the cache (16 KiB decided worse),
//   timed, and streams the rest only when that probe cost more per byte than streaming has been costing (CopyProbing):
//   the bytes are the same either way, only the time differs.
using System.Diagnostics;
using System.Runtime.Intrinsics.X86;

namespace Interop.Buffers;

internal static unsafe class StreamingCopy
{
    private const long FallbackThreshold = 8L << 20;

    /// <summary>
    /// Copies of at least this many bytes bypass the cache (a quarter of the last-level cache). Settable for the bulk
    /// benchmark's comparison (<c>long.MaxValue</c>: never; workers started meanwhile keep glibc's own threshold).
    /// </summary>
    public static long StreamingThreshold { get; set; } = Threshold(LastLevelCacheBytes());

    /// <summary>The threshold for a last-level cache of <paramref name="cacheBytes"/> (null: unknown).</summary>
    internal static long Threshold(long? cacheBytes) => cacheBytes is > 0 and var c ? Math.Max(1L << 20, c / 4) : FallbackThreshold;

    /// <summary>The size of CPU 0's highest-level cache from sysfs (Linux), or null.</summary>
    internal static long? LastLevelCacheBytes()
    {
        long? best = null;
        var bestLevel = 0;
        try
        {
            const string root = "/sys/devices/system/cpu/cpu0/cache";
            if (!Directory.Exists(root))
                return null;
            foreach (var index in Directory.GetDirectories(root, "index*"))
            {
                if (!int.TryParse(File.ReadAllText(Path.Combine(index, "level")).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var level) ||
                    level <= bestLevel || ParseSize(File.ReadAllText(Path.Combine(index, "size")).Trim()) is not { } size)
                    continue;
                (best, bestLevel) = (size, level);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        return best;
    }

    /// <summary>sysfs cache sizes: "32768K", "1M", "512" (bytes).</summary>
    internal static long? ParseSize(string text)
    {
        if (text.Length == 0)
            return null;
        var unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1L };
        var digits = unit == 1 ? text : text[..^1];
        return long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) && n > 0 && n < (1L << 40) / unit
            ? n * unit : null;
    }

    /// <summary>
    /// Copies <paramref name="source"/> into <paramref name="destination"/> (at least as long; the two must not overlap):
    /// with non-temporal stores when the copy is at least <paramref name="threshold"/> bytes and the CPU has AVX,
    /// otherwise with <see cref="Span{T}.CopyTo"/>.
    /// </summary>
    public static void Copy(ReadOnlySpan<byte> source, Span<byte> destination, long threshold)
    {
        if (source.Length < threshold || !Avx.IsSupported || source.Length < 256)
        {
            source.CopyTo(destination);
            return;
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, source.Length, nameof(destination));
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            // Up to the destination's next 32-byte boundary through the cache; then aligned streaming stores, 128 bytes a
            // step; the tail through the cache again. The fence orders the streaming stores before whatever signals the
            // reader (the request's doorbell).
            var n = (nint)source.Length;
            var head = (nint)((32 - ((nuint)d & 31)) & 31);
            new ReadOnlySpan<byte>(s, (int)head).CopyTo(new Span<byte>(d, (int)head));
            var i = head;
            for (; i + 128 <= n; i += 128)
            {
                var a = Avx.LoadVector256(s + i);
                var b = Avx.LoadVector256(s + i + 32);
                var c = Avx.LoadVector256(s + i + 64);
                var e = Avx.LoadVector256(s + i + 96);
                Avx.StoreAlignedNonTemporal(d + i, a);
                Avx.StoreAlignedNonTemporal(d + i + 32, b);
                Avx.StoreAlignedNonTemporal(d + i + 64, c);
                Avx.StoreAlignedNonTemporal(d + i + 96, e);
            }
            Sse.StoreFence();
            new ReadOnlySpan<byte>(s + i, (int)(n - i)).CopyTo(new Span<byte>(d + i, (int)(n - i)));
        }
    }

    /// <summary>Copies into shared memory from this size on choose their kind by measurement (see the design notes).</summary>
    internal const int AdaptiveMinimum = 256 << 10;

    /// <summary>The first bytes of such a copy, copied through the cache and timed: the probe that decides the rest.</summary>
    internal const int ProbeBytes = 64 << 10;

    /// <summary>Every this many probing copies stream their rest whatever the probe says, so the streaming cost stays current.</summary>
    internal const int ExploreEvery = 16;

    private static double s_streamingCost; // Stopwatch ticks per byte of non-temporal copies into shared memory (moving average); 0 until measured
    private static int s_probingCopies;

    /// <summary>Probing copies so far, and how many streamed their rest (approximate under races; for the bulk benchmark).</summary>
    internal static (int Probing, int Streamed) ProbeCounts => (s_probingCopies, s_streamedRests);

    private static int s_streamedRests;

    /// <summary>
    /// Copies <paramref name="source"/> into shared memory that another process reads next (the two must not overlap):
    /// non-temporal from <see cref="StreamingThreshold"/> on, through the cache below <see cref="AdaptiveMinimum"/>, and in
    /// between by probe (<see cref="CopyProbing"/>).
    /// </summary>
    /// <param name="source">What to copy (one piece of a payload, or all of it).</param>
    /// <param name="destination">Where, at least as long.</param>
    /// <param name="payloadLength">The whole payload's length in bytes, which decides the kind for all its pieces.</param>
    public static void CopyShared(ReadOnlySpan<byte> source, Span<byte> destination, long payloadLength)
    {
        if (payloadLength >= StreamingThreshold)
            Copy(source, destination, 0);
        else if (payloadLength < AdaptiveMinimum || !Avx.IsSupported || StreamingThreshold == long.MaxValue) // MaxValue: never streams
            source.CopyTo(destination);
        else
            CopyProbing(source, destination);
    }

    /// <summary>
    /// Copies the first <see cref="ProbeBytes"/> through the cache, timed; the rest follows through the cache when that
    /// cost no more per byte than the streaming copies measured so far, and with non-temporal stores otherwise. Whether
    /// the reader's core still holds the destination's lines (the expensive case) is a property of the whole region, so
    /// its first lines tell. Unsynchronized statistics on purpose: a lost update between racing threads changes no byte.
    /// </summary>
    internal static void CopyProbing(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, source.Length, nameof(destination));
        var probe = Math.Min(ProbeBytes, source.Length);
        var start = Stopwatch.GetTimestamp();
        source[..probe].CopyTo(destination);
        var middle = Stopwatch.GetTimestamp();
        var rest = source.Length - probe;
        if (rest == 0)
            return;
        var streamingCost = s_streamingCost;
        if (!StreamRest((middle - start) / (double)probe, streamingCost, ++s_probingCopies % ExploreEvery == 0))
        {
            source[probe..].CopyTo(destination[probe..]);
            return;
        }
        s_streamedRests++;
        Copy(source[probe..], destination[probe..], 0);
        var cost = (Stopwatch.GetTimestamp() - middle) / (double)rest;
        s_streamingCost = streamingCost == 0 ? cost : (streamingCost + cost) / 2; // half weight to the newest: follows a change in a few copies
    }

    /// <summary>The probe's decision: stream the rest when streaming is unmeasured, due for a new measure, or cheaper per byte.</summary>
    internal static bool StreamRest(double probeCostPerByte, double streamingCostPerByte, bool explore) =>
        streamingCostPerByte == 0 || explore || probeCostPerByte > streamingCostPerByte;
}
