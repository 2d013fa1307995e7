using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Interop.NumPy;

namespace Interop.Benchmarks;

/// <summary>Zero-copy view creation: buffer acquisition + span + release. Must not depend on the array's size.</summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class ViewBenchmarks
{
    private NDArray? _array;

    /// <summary>Array size in bytes (float32): 4 KiB, 1 MiB, 256 MiB, 1 GiB.</summary>
    [Params(4L * Sizes.KiB, 1L * Sizes.MiB, 256L * Sizes.MiB, 1024L * Sizes.MiB)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup() => _array = Sizes.NumPyFloats(Bytes);

    [GlobalCleanup]
    public void Cleanup()
    {
        _array?.Dispose();
        _array = null;
        Sizes.Collect();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("View")]
    public int ViewReadOnly_AsReadOnlySpan_Dispose()
    {
        using var view = _array!.ViewReadOnly<float>();
        return view.AsReadOnlySpan().Length;
    }
}
