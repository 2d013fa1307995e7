using BenchmarkDotNet.Running;

namespace Interop.Benchmarks;

/// <summary>Entry point: BenchmarkDotNet's switcher over every benchmark class (use --filter, --list flat, ...).</summary>
public static class Program
{
    /// <summary>Runs the benchmarks chosen by <paramref name="args"/> with <see cref="BenchConfig"/>.</summary>
    public static void Main(string[] args) =>
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new BenchConfig());
}
