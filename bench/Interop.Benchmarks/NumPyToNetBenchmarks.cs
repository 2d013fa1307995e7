using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Interop.NumPy;

namespace Interop.Benchmarks;

/// <summary>
/// NumPy -> .NET copies against the same-size pure .NET twin: into a caller-provided array (no allocation) and
/// into a new array (fresh memory per call, so first-touch page faults are part of the cost).
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class NumPyToNetBenchmarks
{
    private NDArray? _numpy;
    private float[] _source = [];
    private float[] _destination = [];

    /// <summary>Array size in bytes (float32).</summary>
    [Params(4L * Sizes.KiB, 64L * Sizes.KiB, 1L * Sizes.MiB, 16L * Sizes.MiB, 256L * Sizes.MiB)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _numpy = Sizes.NumPyFloats(Bytes);
        _source = Sizes.NetFloats(Bytes);
        _destination = Sizes.NetFloats(Bytes);
        _numpy.CopyTo<float>(_destination);
        if (!_destination.AsSpan().SequenceEqual(_source))
            throw new InvalidOperationException("NDArray.CopyTo produced wrong values.");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _numpy?.Dispose();
        _numpy = null;
        _source = _destination = [];
        Sizes.Collect();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("IntoExisting")]
    public float NetSpan_CopyTo()
    {
        _source.AsSpan().CopyTo(_destination);
        return _destination[^1];
    }

    [Benchmark, BenchmarkCategory("IntoExisting")]
    public float NDArray_CopyTo()
    {
        _numpy!.CopyTo<float>(_destination);
        return _destination[^1];
    }

    [Benchmark(Baseline = true), BenchmarkCategory("IntoNew")]
    public float[] Net_AllocateUninitialized_CopyTo()
    {
        var result = GC.AllocateUninitializedArray<float>(_source.Length);
        _source.AsSpan().CopyTo(result);
        return result;
    }

    [Benchmark, BenchmarkCategory("IntoNew")]
    public float[] NDArray_ToArray() => _numpy!.ToArray<float>();

    [Benchmark, BenchmarkCategory("IntoNew")]
    public float NDArray_ToPooledArray_Dispose()
    {
        using var pooled = _numpy!.ToPooledArray<float>();
        return pooled.Span[^1];
    }
}
