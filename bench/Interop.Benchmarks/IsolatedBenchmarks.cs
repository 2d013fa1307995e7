using BenchmarkDotNet.Attributes;
using Interop.Sessions;

namespace Interop.Benchmarks;

/// <summary>
/// Isolated mode (worker process, shared memory) against the in-process session and against a same-run memcpy of the
/// payload (Span.CopyTo into an existing array: the baseline, Ratio = row / memcpy). A round trip sends a float32
/// tensor to the worker and gets it back: one copy into the request region; from 64 KiB up the worker answers the
/// result where it lies there (no copy back), below that it copies it into a result region. The CopiedBack row is the
/// same call to a worker told to copy every result back (two copies, as before); Send and Receive time one direction
/// each. Destinations are pooled
/// shared regions (allocated and page-faulted once), so no row pays first-touch page faults after warm-up.
/// </summary>
public class IsolatedBenchmarks
{
    private PythonSession? _isolated;
    private PythonSession? _copyingBack;
    private PythonRef? _copyingModule, _copyingIdentity;
    private PythonSession? _inProcess;
    private PythonRef? _isoModule, _isoIdentity, _isoNBytes, _isoCached, _isoScaled, _isoScaledInPlace, _inModule, _inIdentity;
    private float[] _source = [];
    private float[] _destination = [];

    /// <summary>Tensor size in bytes (float32): 64 B (16 elements), 1 MiB, 16 MiB, 256 MiB.</summary>
    [Params(64L, 1L * Sizes.MiB, 16L * Sizes.MiB, 256L * Sizes.MiB)]
    public long Bytes { get; set; }

    private static string Script => BenchHost.Script("isolated_bench.py");

    [GlobalSetup]
    public void Setup()
    {
        _source = Sizes.NetFloats(Bytes);
        _destination = Sizes.NetFloats(Bytes);
        _isolated = PythonSession.Isolated();
        _isoModule = _isolated.LoadFile(Script);
        _isoIdentity = _isoModule.GetAttr("identity");
        _isoNBytes = _isoModule.GetAttr("nbytes");
        _isoCached = _isoModule.GetAttr("cached");
        _isoScaled = _isoModule.GetAttr("scaled");
        _isoScaledInPlace = _isoModule.GetAttr("scaled_in_place");
        _copyingBack = PythonSession.Isolated();
        _copyingModule = _copyingBack.LoadFile(Script);
        using (var copyBack = _copyingModule.GetAttr("copy_results_back"))
            copyBack.Call().Dispose();
        _copyingIdentity = _copyingModule.GetAttr("identity");
        _inProcess = PythonSession.InProcess();
        _inModule = _inProcess.LoadFile(Script);
        _inIdentity = _inModule.GetAttr("identity");
        // First calls outside the measurement: worker start, imports, region allocation and first touch.
        for (var i = 0; i < 3; i++)
        {
            _ = Isolated_RoundTrip();
            _ = Isolated_RoundTripCopiedBack();
            _ = Isolated_Send();
            _ = Isolated_Receive();
            _ = Isolated_Scale();
            _ = Isolated_ScaleInPlace();
            _ = InProcess_RoundTrip();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var r in new[] { _isoIdentity, _isoNBytes, _isoCached, _isoScaled, _isoScaledInPlace, _isoModule, _copyingIdentity, _copyingModule, _inIdentity, _inModule })
            r?.Dispose();
        _isolated?.Dispose();
        _copyingBack?.Dispose();
        _inProcess?.Dispose();
        _source = _destination = [];
        Sizes.Collect();
    }

    /// <summary>The payload copied once with Span.CopyTo into an existing array (the speed limit of one copy).</summary>
    [Benchmark(Baseline = true)]
    public float Memcpy()
    {
        _source.AsSpan().CopyTo(_destination);
        return _destination[^1];
    }

    /// <summary>Worker round trip: float[] -> request region -> from_numpy -> identity -> .numpy() -> span over the request region (64 B: over a result region).</summary>
    [Benchmark]
    public float Isolated_RoundTrip()
    {
        using var result = _isoIdentity!.Call(_source);
        return result.AsReadOnlySpan<float>()[^1];
    }

    /// <summary>The same round trip with the result copied back into a result region (the two-copy path).</summary>
    [Benchmark]
    public float Isolated_RoundTripCopiedBack()
    {
        using var result = _copyingIdentity!.Call(_source);
        return result.AsReadOnlySpan<float>()[^1];
    }

    /// <summary>Only host -> worker: float[] -> request region -> torch.from_numpy; an int comes back.</summary>
    [Benchmark]
    public long Isolated_Send()
    {
        using var result = _isoNBytes!.Call(_source);
        return result.AsInt64();
    }

    /// <summary>Only worker -> host: a cached worker tensor -> export policy -> .numpy() -> result region -> span.</summary>
    [Benchmark]
    public float Isolated_Receive()
    {
        using var result = _isoCached!.Call(_source.Length);
        return result.AsReadOnlySpan<float>()[^1];
    }

    /// <summary>A computed result: <c>t * 2</c> (a new tensor) copied into a result region by the worker, read in place.</summary>
    [Benchmark]
    public float Isolated_Scale()
    {
        using var result = _isoScaled!.Call(_source);
        return result.AsReadOnlySpan<float>()[^1];
    }

    /// <summary>The same result written by <c>torch.mul(t, 2, out=output.empty(...))</c> into a result region: no copy out.</summary>
    [Benchmark]
    public float Isolated_ScaleInPlace()
    {
        using var result = _isoScaledInPlace!.Call(_source);
        return result.AsReadOnlySpan<float>()[^1];
    }

    /// <summary>The same round trip in this process's Python (argument copied into a new tensor; the result read zero-copy).</summary>
    [Benchmark]
    public float InProcess_RoundTrip()
    {
        using var result = _inIdentity!.Call(_source);
        return result.AsReadOnlySpan<float>()[^1];
    }
}
