using BenchmarkDotNet.Attributes;
using Interop.Embedding;
using Interop.Sessions;
using Python.Runtime;

namespace Interop.Benchmarks;

/// <summary>
/// The fixed cost of a call through an in-process session (<see cref="PythonSession.InProcess()"/>), against the
/// same call made inside Python with <c>timeit</c> in this process and run (the baseline: Ratio = row / Python):
/// <c>interop_helpers.calls.call(identity, (t,))</c> with a 16-element float32 tensor <c>t</c>, i.e. the helper the
/// session runs, with the export of the result, but no .NET conversions and no GIL hand-over.
/// Rows: a call without arguments (None back), a call with a 16-element float[] returned as a tensor and read as a
/// span, and a call with a double returned as a double.
/// </summary>
public class InProcessCallBenchmarks
{
    private const int Loop = 1000;
    private PythonSession? _session;
    private PythonRef? _module, _noop, _identity;
    private PyObject? _timer;
    private readonly float[] _floats = [.. Enumerable.Range(0, 16).Select(i => (float)i)];

    private static string Script => BenchHost.Script("call_bench.py");

    [GlobalSetup]
    public void Setup()
    {
        _session = PythonSession.InProcess();
        _module = _session.LoadFile(Script);
        _noop = _module.GetAttr("noop");
        _identity = _module.GetAttr("identity");
        PythonRuntime.Run(() =>
        {
            using var scope = Py.CreateScope();
            scope.Exec("import timeit, torch, sys\nfrom interop_helpers import calls\n" +
                       "timer = timeit.Timer('call(identity, (t,))', globals={'call': calls.call, " +
                       "'identity': sys.modules[" + PythonQuote(ModuleName()) + "].identity, " +
                       "'t': torch.arange(16, dtype=torch.float32)})\n");
            _timer = scope.Get("timer");
            return 0;
        });
        for (var i = 0; i < 3; i++)
        {
            _ = Call_NoArguments();
            _ = Call_Tensor16();
            _ = Call_Scalar();
        }
    }

    private string ModuleName()
    {
        using var name = _module!.GetAttrValue("__name__");
        return name.AsString();
    }

    private static string PythonQuote(string s) => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    [GlobalCleanup]
    public void Cleanup()
    {
        PythonRuntime.Run(() =>
        {
            _timer?.Dispose();
            return 0;
        });
        foreach (var r in new[] { _noop, _identity, _module })
            r?.Dispose();
        _session?.Dispose();
        Sizes.Collect();
    }

    /// <summary>Inside Python: <c>calls.call(identity, (t,))</c> with a 16-element float32 tensor, timed by <c>timeit</c> (per call).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Loop)]
    public double Python_timeit_calls_call_tensor16() => PythonRuntime.Run(() =>
    {
        using var number = new PyInt(Loop);
        using var seconds = _timer!.InvokeMethod("timeit", number);
        return seconds.As<double>();
    });

    /// <summary><c>noop()</c>: no arguments, None back.</summary>
    [Benchmark]
    public bool Call_NoArguments()
    {
        using var result = _noop!.Call();
        return result.IsNone;
    }

    /// <summary><c>identity(float[16])</c>: the array copied into a new tensor, exported back, read as a span.</summary>
    [Benchmark]
    public float Call_Tensor16()
    {
        using var result = _identity!.Call(_floats);
        return result.AsReadOnlySpan<float>()[^1];
    }

    /// <summary><c>identity(2.5)</c>: a double there and back.</summary>
    [Benchmark]
    public double Call_Scalar()
    {
        using var result = _identity!.Call(2.5);
        return result.AsDouble();
    }
}
