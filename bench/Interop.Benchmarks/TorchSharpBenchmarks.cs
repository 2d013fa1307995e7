using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Interop.NumPy;
using Interop.TorchSharp;
using TorchSharp;

namespace Interop.Benchmarks;

// These classes load TorchSharp's libtorch, so Program.Main runs them in a child process of their own (other classes
// import Python torch: one libtorch per process). TorchSharp runs only where libstdc++ has GLIBCXX_3.4.32 (the
// debian13 environment on a Debian 12 host): elsewhere these setups throw TorchSharpUnavailableException.

/// <summary>
/// Zero-copy NumPy ↔ TorchSharp: flat in size. Baseline: TorchSharp's own zero-copy over a pinned .NET array
/// (<c>torch.from_array</c>). Every case creates and disposes the result.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class TorchSharpShareBenchmarks
{
    private NDArray? _numpy;
    private float[] _net = [];
    private torch.Tensor? _tensor;

    /// <summary>Size in bytes (float32).</summary>
    [Params(4L * Sizes.KiB, 1L * Sizes.MiB, 16L * Sizes.MiB, 256L * Sizes.MiB, 1L * Sizes.MiB * 1024)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        TorchSharpSupport.EnsureLoadable();
        _numpy = Sizes.NumPyFloats(Bytes);
        _net = Sizes.NetFloats(Bytes);
        _tensor = torch.arange(Sizes.Floats(Bytes), dtype: torch.ScalarType.Float32);
        using var shared = _numpy.AsTorchSharp();
        using var last = shared[^1];
        if (last.item<float>() != _net[^1])
            throw new InvalidOperationException("AsTorchSharp produced wrong values.");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _numpy?.Dispose();
        _tensor?.Dispose();
        _numpy = null;
        _tensor = null;
        _net = [];
        Sizes.Collect();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("Share")]
    public long TorchSharp_from_array()
    {
        using var t = torch.from_array(_net);
        return t.numel();
    }

    [Benchmark, BenchmarkCategory("Share")]
    public long NumPy_AsTorchSharp()
    {
        using var t = _numpy!.AsTorchSharp();
        return t.numel();
    }

    [Benchmark, BenchmarkCategory("Share")]
    public int TorchSharp_AsNumPy()
    {
        using var a = _tensor!.AsNumPy();
        return 1;
    }
}

/// <summary>
/// Copies NumPy ↔ TorchSharp. <c>IntoExisting</c>: the copy kernel's bandwidth into memory that already exists (a zero-copy
/// view + <c>copy_</c>) against the same-run memcpy (<c>Span.CopyTo</c> between existing .NET arrays). <c>IntoNew</c>: the
/// API's copies, which return new objects in fresh memory, against libtorch's own <c>clone()</c> (fresh memory + copy: the
/// same allocator and first-touch cost).
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class TorchSharpCopyBenchmarks
{
    private NDArray? _numpy;
    private float[] _source = [];
    private float[] _destination = [];
    private torch.Tensor? _tensor;
    private torch.Tensor? _tensorDestination;
    private NDArray? _numpyDestination;

    /// <summary>Size in bytes (float32).</summary>
    [Params(4L * Sizes.KiB, 1L * Sizes.MiB, 16L * Sizes.MiB, 256L * Sizes.MiB)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        TorchSharpSupport.EnsureLoadable();
        _numpy = Sizes.NumPyFloats(Bytes);
        _source = Sizes.NetFloats(Bytes);
        _destination = Sizes.NetFloats(Bytes);
        _tensor = torch.arange(Sizes.Floats(Bytes), dtype: torch.ScalarType.Float32);
        _tensorDestination = torch.zeros(Sizes.Floats(Bytes), dtype: torch.ScalarType.Float32);
        _numpyDestination = Sizes.NumPyFloats(Bytes);
        using var copy = _numpy.CopyToTorchSharp();
        using var back = _tensor.ToNumPy();
        using var last = copy[^1];
        if (last.item<float>() != _source[^1] || back.ToArray<float>()[^1] != _source[^1])
            throw new InvalidOperationException("the copies produced wrong values.");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _numpy?.Dispose();
        _tensor?.Dispose();
        _tensorDestination?.Dispose();
        _numpyDestination?.Dispose();
        _numpy = _numpyDestination = null;
        _tensor = _tensorDestination = null;
        _source = _destination = [];
        Sizes.Collect();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("IntoExisting")]
    public float Memcpy_Span_CopyTo()
    {
        _source.AsSpan().CopyTo(_destination);
        return _destination[^1];
    }

    [Benchmark, BenchmarkCategory("IntoExisting")]
    public long NumPy_AsTorchSharp_copy_into_tensor()
    {
        using var source = _numpy!.AsTorchSharp();
        _tensorDestination!.copy_(source);
        return source.numel();
    }

    [Benchmark, BenchmarkCategory("IntoExisting")]
    public long TorchSharp_copy_into_NumPy()
    {
        using var destination = _numpyDestination!.AsTorchSharp();
        destination.copy_(_tensor!);
        return destination.numel();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("IntoNew")]
    public long TorchSharp_clone()
    {
        using var t = _tensor!.clone();
        return t.numel();
    }

    [Benchmark, BenchmarkCategory("IntoNew")]
    public long NumPy_CopyToTorchSharp()
    {
        using var t = _numpy!.CopyToTorchSharp();
        return t.numel();
    }

    [Benchmark, BenchmarkCategory("IntoNew")]
    public int TorchSharp_ToNumPy()
    {
        using var a = _tensor!.ToNumPy();
        return 1;
    }
}
