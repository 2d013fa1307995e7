using System.Diagnostics;
using System.Text.RegularExpressions;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;

namespace Interop.Benchmarks;

/// <summary>
/// Entry point: BenchmarkDotNet's switcher over every benchmark class (use --filter, --list flat, ...). One libtorch per
/// process: the TorchSharp benchmarks load TorchSharp's libtorch and others import Python torch, so the TorchSharp
/// classes run in a child process of their own (this program again, with <c>--torchsharp-process</c>).
/// </summary>
public static class Program
{
    private const string TorchSharpProcess = "--torchsharp-process";
    private static readonly Type[] s_torchSharp = [typeof(TorchSharpShareBenchmarks), typeof(TorchSharpCopyBenchmarks)];

    /// <summary>Runs the benchmarks chosen by <paramref name="args"/> with <see cref="BenchConfig"/>.</summary>
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "models")
            return ModelTransferBench.Run(args); // TorchSharp here, Python torch in a worker: no BenchmarkDotNet
        if (args.Length > 0 && args[0] == "profile")
            return CallPathProfile.Run(args); // phases of the in-process call path: a Stopwatch harness, no BenchmarkDotNet
        if (args.Length > 0 && args[0] == "throughput")
            return IsolatedThroughputBench.Run(args); // 8 concurrent callers: a Stopwatch harness, no BenchmarkDotNet
        if (args.Length > 0 && args[0] == "bulk")
            return IsolatedBulkBench.Run(args); // 1 and 16 MiB calls against memcpy, interleaved: a Stopwatch harness
        if (args.Contains(TorchSharpProcess))
        {
            BenchmarkSwitcher.FromTypes(s_torchSharp).Run(args.Where(a => a != TorchSharpProcess).ToArray(), new BenchConfig());
            return 0;
        }
        var others = typeof(Program).Assembly.GetTypes()
            .Where(t => !s_torchSharp.Contains(t) && t.GetMethods().Any(m => m.IsDefined(typeof(BenchmarkAttribute), false)))
            .ToArray();
        var filters = Filters(args);
        if (filters.Count == 0 || Matches(filters, others))
            BenchmarkSwitcher.FromTypes(others).Run(args, new BenchConfig());
        if (filters.Count == 0 || !Matches(filters, s_torchSharp))
            return 0;
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false };
        start.ArgumentList.Add(typeof(Program).Assembly.Location);
        start.ArgumentList.Add(TorchSharpProcess);
        foreach (var a in args)
            start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        child.WaitForExit();
        return child.ExitCode;
    }

    /// <summary>The glob patterns after <c>--filter</c> (BenchmarkDotNet matches them against Namespace.Type.Method).</summary>
    private static List<string> Filters(string[] args)
    {
        var patterns = new List<string>();
        for (var i = Array.IndexOf(args, "--filter") + 1; i > 0 && i < args.Length && !args[i].StartsWith("--", StringComparison.Ordinal); i++)
            patterns.Add(args[i]);
        return patterns;
    }

    private static bool Matches(List<string> filters, Type[] types) =>
        types.SelectMany(t => t.GetMethods().Where(m => m.IsDefined(typeof(BenchmarkAttribute), false)).Select(m => $"{t.FullName}.{m.Name}"))
            .Any(name => filters.Any(f => Regex.IsMatch(name, "^" + Regex.Escape(f).Replace(@"\*", ".*", StringComparison.Ordinal).Replace(@"\?", ".", StringComparison.Ordinal) + "$", RegexOptions.IgnoreCase)));
}
