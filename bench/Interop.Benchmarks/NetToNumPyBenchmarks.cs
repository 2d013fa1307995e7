using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Interop.NumPy;

namespace Interop.Benchmarks;

/// <summary>
/// .NET -> NumPy: a copy into a new ndarray (<c>np.empty</c> + memcpy) against the pure .NET twin (new array + copy),
/// and zero-copy sharing of the .NET array (pin + ndarray over it), which must not depend on the size.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class NetToNumPyBenchmarks
{
    private float[] _source = [];

    /// <summary>Array size in bytes (float32).</summary>
    [Params(4L * Sizes.KiB, 64L * Sizes.KiB, 1L * Sizes.MiB, 16L * Sizes.MiB, 256L * Sizes.MiB)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Embedding.PythonRuntime.Initialize();
        _source = Sizes.NetFloats(Bytes);
        using var copy = NDArray.CopyFrom<float>(_source);
        if (!copy.ToArray<float>().AsSpan().SequenceEqual(_source))
            throw new InvalidOperationException("NDArray.CopyFrom produced wrong values.");
        using var shared = NDArray.Share(_source);
        using var view = shared.ViewReadOnly<float>();
        if (view.Address != 0 && view.AsReadOnlySpan()[^1] != _source[^1])
            throw new InvalidOperationException("NDArray.Share does not see the array's values.");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _source = [];
        Sizes.Collect();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("NetToNumPy")]
    public float[] Net_AllocateUninitialized_CopyTo()
    {
        var result = GC.AllocateUninitializedArray<float>(_source.Length);
        _source.AsSpan().CopyTo(result);
        return result;
    }

    [Benchmark, BenchmarkCategory("NetToNumPy")]
    public int NDArray_CopyFrom_Dispose()
    {
        using var array = NDArray.CopyFrom<float>(_source);
        return _source.Length;
    }

    [Benchmark, BenchmarkCategory("NetToNumPy")]
    public int NDArray_Share_Dispose()
    {
        using var array = NDArray.Share(_source);
        return _source.Length;
    }
}
