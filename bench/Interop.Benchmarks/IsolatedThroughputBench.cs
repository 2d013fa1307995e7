// Design notes: throughput of isolated calls with small tensors (issue 15), a plain Stopwatch harness rather than
// BenchmarkDotNet: the measured quantity is calls per second of 8 threads calling at once, over a pool of 1, 2 or 4
// workers, which BenchmarkDotNet's one-invocation-at-a-time model does not express. Each configuration runs several
// rounds; the median round is reported, with the machine's load average, so that a busy machine is visible.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Interop.Isolated;
using Interop.Sessions;

namespace Interop.Benchmarks;

/// <summary>
/// <c>Interop.Benchmarks throughput [rounds] [callsPerCaller]</c>: calls per second of <c>identity(t)</c> with a
/// 16-element float32 tensor, 8 concurrent callers, pools of 1, 2 and 4 workers; plus the single-caller latency.
/// </summary>
public static class IsolatedThroughputBench
{
    private const int Callers = 8;

    /// <summary>Runs the measurement and prints a markdown table.</summary>
    public static int Run(string[] args)
    {
        var numbers = BenchHost.Positional(args, "--spin", "--elements");
        var rounds = numbers.Length > 0 && int.TryParse(numbers[0], out var r) ? r : 7;
        var perCaller = numbers.Length > 1 && int.TryParse(numbers[1], out var c) ? c : 400;
        var script = BenchHost.Script("isolated_bench.py");
        if (args.Contains("--pipes"))
            WorkerProcess.UseControlBlocks = false; // the transport before the control block, for comparison
        if (args.Contains("--no-spin"))
            ControlBlock.SpinMicroseconds = 0;
        BenchHost.ApplySpin(args);
        Console.WriteLine($"transport: {(WorkerProcess.UseControlBlocks ? $"control block, host spin {ControlBlock.SpinMicroseconds} µs" : "pipes")}; {Environment.ProcessorCount} CPUs, load average {BenchHost.LoadAverage()} at the start; {rounds} rounds of {Callers} callers x {perCaller} calls; medians");
        Console.WriteLine();
        Console.WriteLine("| workers | calls/s (median) | min..max | per call (wall / calls) | single caller round trip (median) | host CPU per call | worker CPU per call |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var workers in new[] { 1, 2, 4 })
        {
            using var session = PythonSession.Isolated(new WorkerOptions { WorkerCount = workers });
            using var module = session.LoadFile(script);
            using var identity = module.GetAttr("identity");
            var input = new float[BenchHost.Option(args, "--elements") is { } elements ? int.Parse(elements, System.Globalization.CultureInfo.InvariantCulture) : 16];
            for (var i = 0; i < input.Length; i++)
                input[i] = i;
            // Start every worker and warm it (imports, regions): a concurrent round first, then a sequential one.
            Round(identity, input, 50);
            Latency(identity, input, 3000); // and the JIT's later tiers: the first pool would otherwise run slower code
            var worker = ((IsolatedSession)session).WorkerProcessIds[0];
            var (hostCpu0, workerCpu0) = (Process.GetCurrentProcess().TotalProcessorTime, BenchHost.ProcessCpu(worker));
            var single = Latency(identity, input, 4000);
            var hostCpu = (Process.GetCurrentProcess().TotalProcessorTime - hostCpu0).TotalMicroseconds / 4000;
            var workerCpu = (BenchHost.ProcessCpu(worker) - workerCpu0).TotalMicroseconds / 4000;
            var rates = new List<double>();
            for (var i = 0; i < rounds; i++)
                rates.Add(Round(identity, input, perCaller));
            var median = BenchHost.Median(CollectionsMarshal.AsSpan(rates));
            Console.WriteLine($"| {workers} | {median:N0} | {rates[0]:N0}..{rates[^1]:N0} | {1e6 / median:0.0} µs | {single:0.0} µs | {hostCpu:0.0} µs | {workerCpu:0.0} µs |");
        }
        Console.WriteLine();
        Console.WriteLine($"load average {BenchHost.LoadAverage()} at the end");
        return 0;
    }

    /// <summary>Calls per second of <see cref="Callers"/> threads, each making <paramref name="perCaller"/> calls.</summary>
    private static double Round(PythonRef identity, float[] input, int perCaller)
    {
        using var start = new Barrier(Callers + 1);
        var failures = 0;
        var threads = Enumerable.Range(0, Callers).Select(_ => new Thread(() =>
        {
            start.SignalAndWait();
            for (var i = 0; i < perCaller; i++)
            {
                using var result = identity.Call(input);
                if (result.AsReadOnlySpan<float>()[15] != 15)
                    Interlocked.Increment(ref failures);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        start.SignalAndWait();
        var watch = Stopwatch.StartNew();
        threads.ForEach(t => t.Join());
        watch.Stop();
        if (failures > 0)
            throw new InvalidOperationException($"{failures} calls returned wrong values");
        return Callers * perCaller / watch.Elapsed.TotalSeconds;
    }

    /// <summary>The median round trip of one caller (microseconds).</summary>
    private static double Latency(PythonRef identity, float[] input, int calls)
    {
        var times = new double[calls];
        for (var i = 0; i < calls; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            using (var result = identity.Call(input))
                _ = result.AsReadOnlySpan<float>()[15];
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        return BenchHost.Median(times);
    }
}
