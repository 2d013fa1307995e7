// Design notes: the cost of isolated calls with 1 MiB and 16 MiB tensors (issue 15), a plain Stopwatch harness beside
// BenchmarkDotNet's IsolatedBenchmarks: the rows are measured interleaved (memcpy, then each call kind, round after
// round), so that a busy shared machine slows the baseline and the calls alike and the ratios stay comparable; it also
// reports the CPU time the host and the worker spend per call (from /proc), which tells work apart from waiting.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Interop.Buffers;
using Interop.Isolated;
using Interop.Sessions;

namespace Interop.Benchmarks;

/// <summary>
/// <c>Interop.Benchmarks bulk [rounds] [calls per round]</c>: medians of isolated calls with a float32 tensor of 1 MiB
/// and 16 MiB against a memcpy of the same bytes (<c>Span.CopyTo</c> into an existing array) measured in the same rounds.
/// </summary>
public static class IsolatedBulkBench
{
    private static readonly string[] s_functions = ["identity", "nbytes", "scaled", "scaled_in_place"];

    /// <summary>Runs the measurement and prints a markdown table.</summary>
    public static int Run(string[] args)
    {
        var numbers = BenchHost.Positional(args, "--spin");
        var rounds = numbers.Length > 0 && int.TryParse(numbers[0], out var r) ? r : 15;
        var perRound = numbers.Length > 1 && int.TryParse(numbers[1], out var c) ? c : 40;
        // --compare-streaming: a second worker started without the streaming copies (Buffers/StreamingCopy.cs), its rows
        // interleaved with the first's, so that both see the same load.
        var compare = args.Contains("--compare-streaming");
        BenchHost.ApplySpin(args); // --spin N, as in the throughput harness
        var streaming = StreamingCopy.StreamingThreshold;
        Console.WriteLine($"{Environment.ProcessorCount} CPUs, load average {BenchHost.LoadAverage()} at the start; {rounds} rounds of {perRound} calls per row; medians of single calls; streaming copies from {streaming >> 20} MiB; host spin {ControlBlock.SpinMicroseconds} µs");
        Console.WriteLine(CrossCoreProbe.Describe());
        Console.WriteLine();
        Console.WriteLine("| size | memcpy | row | median | ratio | host CPU/call | worker CPU/call | streamed after the probe |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|");
        var configs = new List<(string Name, long Threshold, PythonSession Session, PythonRef Module, PythonRef[] Functions, int Worker)>();
        foreach (var (name, threshold) in compare ? new[] { ("", streaming), (" (no streaming)", long.MaxValue) } : [("", streaming)])
        {
            StreamingCopy.StreamingThreshold = threshold; // read by the worker's start (its GLIBC_TUNABLES) and by each copy
            var session = PythonSession.Isolated(new WorkerOptions { WorkerCount = 1 });
            var module = session.LoadFile(BenchHost.Script("isolated_bench.py"));
            configs.Add((name, threshold, session, module, s_functions.Select(module.GetAttr).ToArray(), ((IsolatedSession)session).WorkerProcessIds[0]));
        }
        var rows = configs.SelectMany(config => Enumerable.Range(0, s_functions.Length).Select(k => (Config: config, K: k))).ToArray();
        foreach (var bytes in new[] { 1L << 20, 16L << 20 })
        {
            var source = Sizes.NetFloats(bytes);
            var destination = Sizes.NetFloats(bytes);
            var memcpy = new List<double>();
            var times = rows.Select(_ => new List<double>()).ToArray();
            var hostCpu = new double[rows.Length];
            var workerCpu = new double[rows.Length];
            var probed = new int[rows.Length];
            var streamed = new int[rows.Length];
            foreach (var (config, k) in rows)
            {
                StreamingCopy.StreamingThreshold = config.Threshold;
                for (var warm = 0; warm < 5; warm++)
                    Call(config.Functions[k], source);
            }
            for (var round = 0; round < rounds; round++)
            {
                for (var i = 0; i < perRound; i++)
                {
                    var t0 = Stopwatch.GetTimestamp();
                    source.AsSpan().CopyTo(destination);
                    memcpy.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }
                for (var row = 0; row < rows.Length; row++)
                {
                    var (config, k) = rows[row];
                    StreamingCopy.StreamingThreshold = config.Threshold;
                    var (h0, w0) = (Process.GetCurrentProcess().TotalProcessorTime, BenchHost.ProcessCpu(config.Worker));
                    var p0 = StreamingCopy.ProbeCounts;
                    for (var i = 0; i < perRound; i++)
                    {
                        var t0 = Stopwatch.GetTimestamp();
                        Call(config.Functions[k], source);
                        times[row].Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                    }
                    hostCpu[row] += (Process.GetCurrentProcess().TotalProcessorTime - h0).TotalMicroseconds;
                    workerCpu[row] += (BenchHost.ProcessCpu(config.Worker) - w0).TotalMicroseconds;
                    var p1 = StreamingCopy.ProbeCounts;
                    probed[row] += p1.Probing - p0.Probing;
                    streamed[row] += p1.Streamed - p0.Streamed;
                }
            }
            var baseline = BenchHost.Median(CollectionsMarshal.AsSpan(memcpy));
            for (var row = 0; row < rows.Length; row++)
            {
                var median = BenchHost.Median(CollectionsMarshal.AsSpan(times[row]));
                var calls = rounds * perRound;
                Console.WriteLine($"| {bytes >> 20} MiB | {baseline:0.0} µs | {s_functions[rows[row].K]}{rows[row].Config.Name} | {median:0.0} µs | {median / baseline:0.00}× | {hostCpu[row] / calls:0.0} µs | {workerCpu[row] / calls:0.0} µs | {(probed[row] == 0 ? "—" : $"{streamed[row]} of {probed[row]}")} |");
            }
        }
        StreamingCopy.StreamingThreshold = streaming;
        foreach (var config in configs)
        {
            foreach (var f in config.Functions)
                f.Dispose();
            config.Module.Dispose();
            config.Session.Dispose();
        }
        Console.WriteLine();
        Console.WriteLine($"load average {BenchHost.LoadAverage()} at the end");
        return 0;
    }

    private static float Call(PythonRef function, float[] source)
    {
        using var result = function.Call(source);
        return result.Kind == PythonValueKind.Tensor ? result.AsReadOnlySpan<float>()[^1] : result.AsInt64();
    }
}
