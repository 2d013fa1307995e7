using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Interop.Benchmarks;

/// <summary>
/// In-process runs (CPython can be started only once per process, so every benchmark shares this process's
/// embedded interpreter) with a short job: the whole suite fits in about ten minutes on a 2-core VM.
/// Command-line options such as <c>--job</c> add jobs of their own; they are in-process too only if they say so.
/// </summary>
public sealed class BenchConfig : ManualConfig
{
    /// <summary>One short in-process job, medians and ratios against each category's baseline, allocations.</summary>
    public BenchConfig()
    {
        // DefaultConfig's loggers, exporters and columns; only the job is replaced.
        foreach (var logger in DefaultConfig.Instance.GetLoggers())
            AddLogger(logger);
        foreach (var exporter in DefaultConfig.Instance.GetExporters())
            AddExporter(exporter);
        foreach (var provider in DefaultConfig.Instance.GetColumnProviders())
            AddColumnProvider(provider);
        foreach (var analyser in DefaultConfig.Instance.GetAnalysers())
            AddAnalyser(analyser);
        foreach (var validator in DefaultConfig.Instance.GetValidators())
            AddValidator(validator);
        AddJob(Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithLaunchCount(1)
            .WithWarmupCount(2)
            .WithIterationCount(Iterations())
            .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(120))
            .WithId("InProcessShort"));
        AddColumn(StatisticColumn.Median);
        AddDiagnoser(MemoryDiagnoser.Default);
        AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByCategory);
        WithOptions(ConfigOptions.JoinSummary);
    }

    /// <summary>Iterations per case: 7, or <c>INTEROP_BENCH_ITERATIONS</c> (3–100) for steadier medians on noisy machines.</summary>
    private static int Iterations() =>
        int.TryParse(Environment.GetEnvironmentVariable("INTEROP_BENCH_ITERATIONS"), out var n) ? Math.Clamp(n, 3, 100) : 7;
}
