using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Interop.NumPy;

namespace Interop.Benchmarks;

/// <summary>
/// .NET -> NumPy: a copy into a new ndarray (<c>np.empty</c> + memcpy) against the pure .NET twin (new array + copy),
/// and zero-copy sharing of the .NET array (pin + ndarray over it), which must not depend on the size; and a copy into
/// an existing ndarray (<see cref="NDArray.Assign{T}(ReadOnlySpan{T})"/>) against <c>Span.CopyTo</c> between preallocated buffers.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class NetToNumPyBenchmarks
{
    private float[] _source = [];
    private float[] _netDestination = [];
    private NDArray? _target;

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
        _netDestination = Sizes.NetFloats(Bytes);
        _target = Sizes.NumPyFloats(Bytes);
        _target.Assign<float>(_source);
        if (!_target.ToArray<float>().AsSpan().SequenceEqual(_source))
            throw new InvalidOperationException("NDArray.Assign produced wrong values.");
        using var shared = NDArray.Share(_source);
        using var view = shared.ViewReadOnly<float>();
        if (view.Address != 0 && view.AsReadOnlySpan()[^1] != _source[^1])
            throw new InvalidOperationException("NDArray.Share does not see the array's values.");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _target?.Dispose();
        _target = null;
        _source = _netDestination = [];
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

    [Benchmark(Baseline = true), BenchmarkCategory("IntoExistingNumPy")]
    public float NetSpan_CopyTo()
    {
        _source.AsSpan().CopyTo(_netDestination);
        return _netDestination[^1];
    }

    [Benchmark, BenchmarkCategory("IntoExistingNumPy")]
    public int NDArray_Assign()
    {
        _target!.Assign<float>(_source);
        return _source.Length;
    }
}
