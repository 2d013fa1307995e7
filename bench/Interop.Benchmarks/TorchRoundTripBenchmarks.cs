using BenchmarkDotNet.Attributes;
using Interop.Embedding;
using Interop.NumPy;
using Interop.Torch;
using Python.Runtime;

namespace Interop.Benchmarks;

/// <summary>
/// The seed's round trip per call: NumPy array -> <c>torch.from_numpy</c> -> export policy + <c>Tensor.numpy()</c> ->
/// .NET read-only span, from C#, against the same round trip timed inside Python with <c>timeit</c> in this same
/// process and run (the baseline: Ratio = C# / Python). Everything is zero-copy, so no row may grow with size.
/// </summary>
public class TorchRoundTripBenchmarks
{
    private const int Loop = 1000;
    private NDArray? _array;
    private PyObject? _rawTimer;
    private PyObject? _policyTimer;

    /// <summary>Array size in bytes (float32): 64 B (16 elements), 1 MiB, 256 MiB.</summary>
    [Params(64L, 1L * Sizes.MiB, 256L * Sizes.MiB)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _array = Sizes.NumPyFloats(Bytes);
        PythonRuntime.Run(() =>
        {
            using var torch = TorchTensor.Import();
            using var scope = Py.CreateScope();
            scope.Set("torch", torch);
            scope.Set("a", _array.PyObject);
            scope.Exec("import timeit\nfrom interop_helpers import torch_export\n" +
                       "raw = timeit.Timer('torch.from_numpy(a).numpy()', globals={'torch': torch, 'a': a})\n" +
                       "policy = timeit.Timer('export(torch.from_numpy(a))', globals={'torch': torch, 'a': a, 'export': torch_export.export})\n");
            _rawTimer = scope.Get("raw");
            _policyTimer = scope.Get("policy");
            return 0;
        });
        // One C# round trip before measuring, so imports and first-call costs are not timed.
        _ = CSharp_FromNumPy_Numpy_Span();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        PythonRuntime.Run(() =>
        {
            _rawTimer?.Dispose();
            _policyTimer?.Dispose();
            return 0;
        });
        _array?.Dispose();
        _array = null;
        Sizes.Collect();
    }

    /// <summary>Python's own <c>torch.from_numpy(a).numpy()</c>, timed by <c>timeit</c> over 1,000 calls (per call).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Loop)]
    public double Python_timeit_from_numpy_numpy() => Time(_rawTimer!);

    /// <summary>The same in Python with the export policy: <c>torch_export.export(torch.from_numpy(a))</c>.</summary>
    [Benchmark(OperationsPerInvoke = Loop)]
    public double Python_timeit_from_numpy_policy_export() => Time(_policyTimer!);

    /// <summary>From C#: <c>TorchTensor.FromNumPy</c>, <c>Numpy()</c> (policy + real .numpy()), a zero-copy span, releases.</summary>
    [Benchmark]
    public float CSharp_FromNumPy_Numpy_Span()
    {
        using var tensor = TorchTensor.FromNumPy(_array!);
        using var exported = tensor.Numpy();
        using var view = exported.ViewReadOnly<float>();
        return view.AsReadOnlySpan()[^1];
    }

    /// <summary>
    /// The same round trip inside a GIL the caller holds (<c>using (PythonRuntime.AcquireGil())</c> around a loop of them, as
    /// pythonnet users write <c>using (Py.GIL())</c>): each operation's own acquisition is then a nested one.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Loop)]
    public float CSharp_FromNumPy_Numpy_Span_InHeldGil()
    {
        using var gil = PythonRuntime.AcquireGil();
        var last = 0f;
        for (var i = 0; i < Loop; i++)
            last += CSharp_FromNumPy_Numpy_Span();
        return last;
    }

    // BenchmarkDotNet times the whole call (with OperationsPerInvoke = Loop); timeit runs the statement Loop times.
    private static double Time(PyObject timer) => PythonRuntime.Run(() =>
    {
        using var number = new PyInt(Loop);
        using var seconds = timer.InvokeMethod("timeit", number);
        return seconds.As<double>();
    });
}
