// Design notes: the model-transfer comparison of docs/models.md (issue 14), a plain Stopwatch program rather than
// BenchmarkDotNet: one transfer of a 1 GiB state dict takes about a second and the peak RSS of both processes is part
// of the result. TorchSharp runs here and Python torch in an isolated worker (one libtorch per process).
using System.Diagnostics;
using System.Runtime.InteropServices;
using Interop.Embedding;
using Interop.Isolated;
using Interop.Sessions;
using Interop.TorchSharp;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Interop.Benchmarks;

/// <summary><c>Interop.Benchmarks models [runs]</c>: resnet18 and a synthetic 1 GiB state dict, Python -> TorchSharp.</summary>
public static class ModelTransferBench
{
    /// <summary>Runs the comparison and prints a markdown table.</summary>
    public static int Run(string[] args)
    {
        var runs = args.Length > 1 && int.TryParse(args[1], out var n) ? n : 7;
        var script = BenchHost.Script("models_bench.py");
        using var session = PythonSession.Isolated(new WorkerOptions
        {
            Python = new PythonOptions { PythonExecutable = Environment.GetEnvironmentVariable("INTEROP_PYTHON") },
            DefaultTimeout = TimeSpan.FromMinutes(5),
        });
        using var py = session.LoadFile(script);
        Console.WriteLine($"TorchSharp {TorchSharpSupport.LibTorchVersion} here, worker: {session.Description}; {runs} runs; " +
                          $"{Environment.ProcessorCount} CPUs, load average {BenchHost.LoadAverage()} at the start");
        Console.WriteLine();
        Resnet(py, runs);
        Synthetic(py, Math.Max(3, runs / 2));
        return 0;
    }

    private static void Resnet(PythonRef py, int runs)
    {
        using var value = Call(py, "resnet18", 0);
        using var pyModel = value.AsRef();
        var model = torchvision.models.resnet18();
        var bytes = model.state_dict().Values.Sum(t => t.numel() * t.ElementSize);
        var parameters = model.parameters().Sum(p => p.numel());
        var route = model.LoadWeightsFrom(pyModel).Route; // warm: the worker imports the helpers
        var ours = Median(runs, () => model.LoadWeightsFrom(pyModel));
        var oursMin = s_lastMin;
        ModelWeights.SimulateDirectRefusal = true; // the fallback: the shared-region route (ptrace_scope 2/3, seccomp)
        model.LoadWeightsFrom(pyModel); // warm: the pool gets its region
        var region = Median(runs, () => model.LoadWeightsFrom(pyModel));
        var regionMin = s_lastMin;
        ModelWeights.SimulateDirectRefusal = false;
        // The other direction: TorchSharp -> the Python module (CopyWeightsTo), both routes.
        var backRoute = model.CopyWeightsTo(pyModel).Route;
        var back = Median(runs, () => model.CopyWeightsTo(pyModel));
        var backMin = s_lastMin;
        ModelWeights.SimulateDirectRefusal = true;
        model.CopyWeightsTo(pyModel);
        var backRegion = Median(runs, () => model.CopyWeightsTo(pyModel));
        var backRegionMin = s_lastMin;
        ModelWeights.SimulateDirectRefusal = false;
        var path = Path.Combine(Path.GetTempPath(), $"interop-bench-{Environment.ProcessId}.pt");
        var save = new List<double>();
        var file = Median(runs, () =>
        {
            using (var s = Call(py, "save", pyModel, path))
                save.Add(s.AsDouble());
            model.load_py(path);
        });
        var fileMin = s_lastMin;
        var load = Median(runs, () => model.load_py(path));
        var loadMin = s_lastMin;
        File.Delete(path);
        var memcpy = MemcpyMedian(bytes, runs);
        var memcpyMin = s_lastMin;
        var saveMedian = BenchHost.Median(CollectionsMarshal.AsSpan(save));
        Console.WriteLine($"### resnet18 ({parameters / 1e6:F1} M parameters, {bytes / 1e6:F1} MB of state, {model.state_dict().Count} entries)");
        Console.WriteLine();
        Console.WriteLine("| route | median | fastest | median / ours |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| ModelWeights.LoadWeightsFrom (isolated worker, in memory; route {route}) | {Ms(ours)} | {Ms(oursMin)} | 1.00 |");
        Console.WriteLine($"| LoadWeightsFrom, fallback route (shared region, where direct reads are refused) | {Ms(region)} | {Ms(regionMin)} | {region / ours:F2} |");
        Console.WriteLine($"| torch.save to a file + TorchSharp.PyBridge load_py | {Ms(file)} | {Ms(fileMin)} | {file / ours:F2} |");
        Console.WriteLine($"| &nbsp;&nbsp;of which torch.save (+fsync) in Python | {Ms(saveMedian)} | {Ms(save[0])} | |");
        Console.WriteLine($"| &nbsp;&nbsp;load_py alone (file already written, page cache) | {Ms(load)} | {Ms(loadMin)} | {load / ours:F2} |");
        Console.WriteLine($"| memcpy of the same bytes (existing destination) | {Ms(memcpy)} | {Ms(memcpyMin)} | {memcpy / ours:F3} |");
        Console.WriteLine();
        Console.WriteLine($"LoadWeightsFrom / memcpy (medians): {ours / memcpy:F2}x (fallback route: {region / memcpy:F2}x).");
        Console.WriteLine();
        Console.WriteLine("| TorchSharp module -> Python module | median | fastest | median / memcpy |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| CopyWeightsTo (route {backRoute}) | {Ms(back)} | {Ms(backMin)} | {back / memcpy:F2} |");
        Console.WriteLine($"| CopyWeightsTo, fallback route (shared region) | {Ms(backRegion)} | {Ms(backRegionMin)} | {backRegion / memcpy:F2} |");
        Console.WriteLine();
    }

    private static void Synthetic(PythonRef py, int runs)
    {
        const int count = 64, mib = 16;
        const long total = (long)count * mib << 20;
        using var holderValue = Call(py, "synthetic", count, mib);
        using var holder = holderValue.AsRef();
        using var state = holder.GetAttr("state");
        var module = new ParameterModule(count, mib);
        var route = module.LoadWeightsFrom(state).Route; // warm: touches the parameters' pages
        var direct = Transfers(py, module, state, runs);
        ModelWeights.SimulateDirectRefusal = true;
        module.LoadWeightsFrom(state); // warm: fills the worker's region pool
        var region = Transfers(py, module, state, runs);
        ModelWeights.SimulateDirectRefusal = false;
        var memcpy = MemcpyMedian(total, runs);
        var memcpyMin = s_lastMin;
        Console.WriteLine($"### synthetic state dict: {count} x {mib} MiB float32 = {total >> 20} MiB (default 64 MiB batches)");
        Console.WriteLine();
        Console.WriteLine("| route | median | fastest | throughput (median) | extra peak RSS, this process | extra peak RSS, worker |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| ModelWeights.LoadWeightsFrom (route {route}) | {Ms(direct.Median)} | {Ms(direct.Min)} | {total / direct.Median / 1e9:F2} GB/s | {direct.HostExtra >> 20} MiB | {direct.WorkerExtra >> 20} MiB |");
        Console.WriteLine($"| LoadWeightsFrom, fallback route (shared region) | {Ms(region.Median)} | {Ms(region.Min)} | {total / region.Median / 1e9:F2} GB/s | {region.HostExtra >> 20} MiB | {region.WorkerExtra >> 20} MiB |");
        Console.WriteLine($"| memcpy of the same bytes (existing destination) | {Ms(memcpy)} | {Ms(memcpyMin)} | {total / memcpy / 1e9:F2} GB/s | | |");
        Console.WriteLine();
        Console.WriteLine($"LoadWeightsFrom / memcpy (medians): {direct.Median / memcpy:F2}x (fallback route: {region.Median / memcpy:F2}x). Largest tensor: {mib} MiB. " +
                          $"Both processes hold the {total >> 20} MiB of weights before the transfer (not counted as extra).");
    }

    /// <summary>Timed loads with the extra peak RSS of both processes (VmHWM after a reset, minus VmRSS before).</summary>
    private static (double Median, double Min, long HostExtra, long WorkerExtra) Transfers(PythonRef py, nn.Module module, PythonRef state, int runs)
    {
        var times = new List<double>();
        long hostExtra = 0, workerExtra = 0;
        for (var i = 0; i < runs; i++)
        {
            GC.Collect();
            ResetPeak();
            using (Call(py, "reset_peak")) { }
            var hostBefore = Status("VmRSS");
            using var wb = Call(py, "rss");
            var workerBefore = wb.AsInt64();
            var sw = Stopwatch.StartNew();
            module.LoadWeightsFrom(state);
            times.Add(sw.Elapsed.TotalSeconds);
            hostExtra = Math.Max(hostExtra, Status("VmHWM") - hostBefore);
            using var wp = Call(py, "peak_rss");
            workerExtra = Math.Max(workerExtra, wp.AsInt64() - workerBefore);
        }
        var median = BenchHost.Median(CollectionsMarshal.AsSpan(times));
        return (median, times[0], hostExtra, workerExtra);
    }

    /// <summary>A module with <c>count</c> float32 parameters w0.. of <c>mib</c> MiB each, touched (so their pages are resident before measuring).</summary>
    private sealed class ParameterModule : nn.Module
    {
        public ParameterModule(int count, int mib) : base(nameof(ParameterModule))
        {
            for (var i = 0; i < count; i++)
                register_parameter($"w{i}", new global::TorchSharp.Modules.Parameter(zeros((long)mib << 18)));
        }
    }

    private static PythonValue Call(PythonRef module, string name, params object?[] args)
    {
        using var fn = module.GetAttr(name);
        return fn.Call(args);
    }

    private static double Median(int runs, Action action)
    {
        var times = new List<double>();
        for (var i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        var median = BenchHost.Median(CollectionsMarshal.AsSpan(times));
        s_lastMin = times[0];
        return median;
    }

    private static double s_lastMin;

    /// <summary>Span.CopyTo (memmove) between two existing, touched arrays of <paramref name="bytes"/>.</summary>
    private static double MemcpyMedian(long bytes, int runs)
    {
        var source = new byte[bytes];
        var destination = new byte[bytes];
        source.AsSpan().Fill(1);
        destination.AsSpan().Clear();
        return Median(runs, () => source.AsSpan().CopyTo(destination));
    }

    private static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        return -1;
    }

    private static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    private static string Ms(double seconds) => $"{seconds * 1e3:F1} ms";
}
