// Design notes: what the machine charges for moving data between two cores, printed beside the isolated-mode figures
// (issue 15), because those figures depend on it more than on this library: on two 2-core VMs of the same type a
// cached 1 MiB write into lines the other core had just read cost 23 us (alternating buffers) on one and 141 us on the
// other. Two threads spin on one cache line or hand a 1 MiB buffer back and forth; with two CPUs and both threads
// busy, the scheduler keeps them on different cores.
using System.Diagnostics;
using Interop.Buffers;

namespace Interop.Benchmarks;

/// <summary>Cross-core costs of this machine, medians: a cache-line round trip, and 1 MiB written after the other core read it.</summary>
public static class CrossCoreProbe
{
    private const int Bytes = 1 << 20;

    /// <summary>One line: the cache-line round trip (ns) and the 1 MiB hand-over costs (us), against a local memcpy.</summary>
    public static string Describe()
    {
        if (Environment.ProcessorCount < 2)
            return "cross-core probe skipped: one CPU";
        var cached = HandOver(streaming: false);
        var streamed = HandOver(streaming: true);
        return $"cross-core: cache-line round trip {LineRoundTrip():0} ns; 1 MiB written over lines the other core read: " +
               $"{cached.Write:0.0} µs cached, {streamed.Write:0.0} µs streamed; read back by the other core {streamed.Read:0.0} µs; " +
               $"local memcpy {LocalCopy():0.0} µs";
    }

    private static double LineRoundTrip()
    {
        const int n = 200_000;
        var flag = new int[32];
        var partner = new Thread(() =>
        {
            for (var i = 0; i < n; i++)
            {
                while (Volatile.Read(ref flag[16]) != 1) { }
                Volatile.Write(ref flag[16], 0);
            }
        });
        partner.Start();
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; i < n; i++)
        {
            Volatile.Write(ref flag[16], 1);
            while (Volatile.Read(ref flag[16]) != 0) { }
        }
        var perRound = Stopwatch.GetElapsedTime(start).TotalNanoseconds / n;
        partner.Join();
        return perRound;
    }

    // This thread writes the shared buffer, the partner reads all of it, 400 times; medians of the write and the read.
    private static (double Write, double Read) HandOver(bool streaming)
    {
        const int rounds = 400;
        var shared = GC.AllocateUninitializedArray<byte>(Bytes, pinned: true);
        var source = new byte[Bytes];
        var sink = new byte[Bytes];
        var turn = 0;
        var writes = new double[rounds];
        var reads = new double[rounds];
        var partner = new Thread(() =>
        {
            for (var i = 0; i < rounds; i++)
            {
                while (Volatile.Read(ref turn) != 1) { }
                var t0 = Stopwatch.GetTimestamp();
                shared.AsSpan().CopyTo(sink);
                reads[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                Volatile.Write(ref turn, 0);
            }
        });
        partner.Start();
        for (var i = 0; i < rounds; i++)
        {
            while (Volatile.Read(ref turn) != 0) { }
            var t0 = Stopwatch.GetTimestamp();
            StreamingCopy.Copy(source, shared, streaming ? 0 : long.MaxValue);
            writes[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            Volatile.Write(ref turn, 1);
        }
        partner.Join();
        return (BenchHost.Median(writes), BenchHost.Median(reads));
    }

    private static double LocalCopy()
    {
        var a = new byte[Bytes];
        var b = new byte[Bytes];
        var times = new double[400];
        for (var i = 0; i < times.Length; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            a.AsSpan().CopyTo(b);
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        return BenchHost.Median(times);
    }
}
