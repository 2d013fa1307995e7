using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Interop.Embedding;
using Interop.NumPy;
using Python.Runtime;

namespace Interop.Benchmarks;

/// <summary>
/// The routes plain pythonnet offers, against this library's buffer-protocol copies: <c>a.tolist()</c> converted to
/// <c>float[]</c> by pythonnet, and a <c>float[]</c> handed to <c>np.array(...)</c> through pythonnet's conversion.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class NaivePythonNetBenchmarks
{
    private NDArray? _numpy;
    private PyObject? _np;
    private float[] _source = [];
    private float[] _destination = [];

    /// <summary>Array size in bytes (float32).</summary>
    [Params(4L * Sizes.KiB, 1L * Sizes.MiB)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _numpy = Sizes.NumPyFloats(Bytes);
        _np = PythonRuntime.Import("numpy");
        _source = Sizes.NetFloats(Bytes);
        _destination = new float[_source.Length];
        if (!PythonNet_ToList_AsFloatArray().AsSpan().SequenceEqual(_source))
            throw new InvalidOperationException("tolist() -> float[] produced wrong values.");
        using (PythonRuntime.AcquireGil())
        {
            using var pyArray = _np.InvokeMethod("array", _source.ToPython());
            using var wrapped = NDArray.Wrap(pyArray);
            if (wrapped.DTypeName != "float32" || !wrapped.ToArray<float>().AsSpan().SequenceEqual(_source))
                throw new InvalidOperationException($"np.array(float[]) produced {wrapped.DTypeName} with other values.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _numpy?.Dispose();
        _numpy = null;
        using (PythonRuntime.AcquireGil())
            _np?.Dispose();
        _np = null;
        _source = _destination = [];
        Sizes.Collect();
    }

    [Benchmark(Baseline = true), BenchmarkCategory("Naive-NumPyToNet")]
    public float NDArray_CopyTo()
    {
        _numpy!.CopyTo<float>(_destination);
        return _destination[^1];
    }

    [Benchmark, BenchmarkCategory("Naive-NumPyToNet")]
    public float[] NDArray_ToArray() => _numpy!.ToArray<float>();

    [Benchmark, BenchmarkCategory("Naive-NumPyToNet")]
    public float[] PythonNet_ToList_AsFloatArray()
    {
        using (PythonRuntime.AcquireGil())
        {
            using var list = _numpy!.PyObject.InvokeMethod("tolist");
            return list.As<float[]>();
        }
    }

    [Benchmark(Baseline = true), BenchmarkCategory("Naive-NetToNumPy")]
    public int NDArray_CopyFrom_Dispose()
    {
        using var array = NDArray.CopyFrom<float>(_source);
        return _source.Length;
    }

    [Benchmark, BenchmarkCategory("Naive-NetToNumPy")]
    public int PythonNet_NpArray_FromFloatArray()
    {
        using (PythonRuntime.AcquireGil())
        {
            using var managed = _source.ToPython();
            using var array = _np!.InvokeMethod("array", managed);
            return _source.Length;
        }
    }
}
