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
}
