// Design notes: a Stopwatch profile of the in-process call path (issue 15): where the time of the seed round trip
// (TorchRoundTripBenchmarks) and of a session call with a 16-float tensor (InProcessCallBenchmarks) goes, phase by
// phase, each phase timed alone over many iterations (medians of rounds), with the Python-side baselines in the same
// process. Not BenchmarkDotNet: the phases call internal pieces directly, under one GIL, to split a public call apart.
using System.Diagnostics;
using Interop.Embedding;
using Interop.Native;
using Interop.NumPy;
using Interop.Sessions;
using Interop.Torch;
using Python.Runtime;

namespace Interop.Benchmarks;

/// <summary><c>Interop.Benchmarks profile [iterations]</c>: per-phase costs of the in-process call path, in microseconds.</summary>
public static class CallPathProfile
{
    private const int Rounds = 7;

    /// <summary>Runs the profile and prints one line per phase.</summary>
    public static int Run(string[] args)
    {
        var n = args.Length > 1 && int.TryParse(args[1], out var parsed) ? parsed : 100_000;
        using var array = Sizes.NumPyFloats(64);
        using var session = PythonSession.InProcess();
        using var module = session.LoadFile(BenchHost.Script("call_bench.py"));
        using var identity = module.GetAttr("identity");
        using var noop = module.GetAttr("noop");
        float[] floats = [.. Enumerable.Range(0, 16).Select(i => (float)i)];
        PyObject policyTimer = null!, callTimer = null!, rawTimer = null!;
        PythonRuntime.Run(() =>
        {
            using var torch = TorchTensor.Import();
            using var scope = Py.CreateScope();
            scope.Set("torch", torch);
            scope.Set("a", array.PyObject);
            scope.Exec("import timeit, sys\nfrom interop_helpers import torch_export, calls\n" +
                       "raw = timeit.Timer('torch.from_numpy(a).numpy()', globals={'torch': torch, 'a': a})\n" +
                       "policy = timeit.Timer('export(torch.from_numpy(a))', globals={'torch': torch, 'a': a, 'export': torch_export.export})\n" +
                       "t = torch.arange(16, dtype=torch.float32)\n" +
                       "ident = lambda x: x\n" +
                       "call = timeit.Timer('c(ident, (t,))', globals={'c': calls.call, 'ident': ident, 't': t})\n");
            rawTimer = scope.Get("raw");
            policyTimer = scope.Get("policy");
            callTimer = scope.Get("call");
            return 0;
        });
        using var tensor = TorchTensor.FromNumPy(array);
        using var exported = tensor.Numpy();

        Console.WriteLine($"{n:N0} iterations x {Rounds} rounds, medians in µs; {Environment.ProcessorCount} CPUs, load average {BenchHost.LoadAverage()}");
        Report("python: torch.from_numpy(a).numpy() (timeit)", () => Timeit(rawTimer, n), n);
        Report("python: export(torch.from_numpy(a)) (timeit)", () => Timeit(policyTimer, n), n);
        Report("python: calls.call(ident, (t,)) (timeit)", () => Timeit(callTimer, n), n);
        Report("GIL acquire + release", () => Loop(n, () => { using var gil = PythonRuntime.AcquireGil(); }), n);
        Report("GIL acquire + release, nested in a held GIL", () => UnderGil(n, () => { using var gil = PythonRuntime.AcquireGil(); }), n);
        void Seed()
        {
            using var t = TorchTensor.FromNumPy(array);
            using var e = t.Numpy();
            using var v = e.ViewReadOnly<float>();
            _ = v.AsReadOnlySpan()[^1];
        }
        Report("seed round trip (FromNumPy, Numpy, view, span)", () => Loop(n, Seed), n);
        Report("seed round trip inside one held GIL (user's using AcquireGil)", () => UnderGil(n, Seed), n);
        Report("  FromNumPy + Dispose", () => Loop(n, () => TorchTensor.FromNumPy(array).Dispose()), n);
        Report("  Numpy() + Dispose", () => Loop(n, () => tensor.Numpy().Dispose()), n);
        Report("  ViewReadOnly + span + Dispose", () => Loop(n, () =>
        {
            using var v = exported.ViewReadOnly<float>();
            _ = v.AsReadOnlySpan()[^1];
        }), n);
        Report("  (one GIL) torch.from_numpy vectorcall + decref", () => UnderGil(n, () =>
            OwnedReference.DecRef(DirectCall.CallRaw(CPython.Address(TorchTensor.FromNumpyFunction), array.ObjectAddress, "from_numpy"))), n);
        using var flagsName = PythonRuntime.Run(() => new PyString("flags"));
        using var writeableName = PythonRuntime.Run(() => new PyString("writeable"));
        Report("  (one GIL) arr.flags.writeable", () => UnderGil(n, () =>
            DirectCall.AttributeIsTrue(array.ObjectAddress, flagsName, writeableName, "w")), n);
        Report("  (one GIL) a warnings scope", () => UnderGil(n, () => Diagnostics.PythonWarnings.Capture("x").Dispose()), n);
        Report("session: noop()", () => Loop(n, () => noop.Call().Dispose()), n);
        Report("session: identity(2.5)", () => Loop(n, () => identity.Call(2.5).Dispose()), n);
        Report("session: identity(float[16]) + span", () => Loop(n, () =>
        {
            using var r = identity.Call(floats);
            _ = r.AsReadOnlySpan<float>()[^1];
        }), n);
        Report("  (one GIL) CopyToNewArray(16 floats) + decref", () => UnderGil(n, () =>
            OwnedReference.DecRef(NDArray.CopyToNewArray(System.Runtime.InteropServices.MemoryMarshal.AsBytes(floats.AsSpan()), DTypes.DType.Float32, [16]))), n);
        Report("  (one GIL) BufferTensorData of an exported array (via a pythonnet object) + Dispose", () => UnderGil(n, () =>
            BufferTensorData.TryCreate(CPython.Borrow(exported.ObjectAddress))!.Dispose()), n);
        var inProcess = (InProcessSession)session;
        object?[] arguments = [floats];
        Report("  (one GIL) arguments' tuple of float[16] (array + torch.from_numpy) + release", () => UnderGil(n, () =>
        {
            using var temporaries = new InProcessConversions.Temporaries();
            _ = InProcessConversions.ToTuple(inProcess, arguments, temporaries);
        }), n);
        Report("  result: ToValue of an exported array (one GIL) + span + Dispose", () => Loop(n, () =>
        {
            PythonValue value;
            using (PythonRuntime.AcquireGil())
                value = InProcessConversions.ToValue(inProcess, DirectCall.CallRaw(CPython.Address(TorchTensor.PolicyFunction("export")), tensor.ObjectAddress, "export"));
            _ = value.AsReadOnlySpan<float>()[^1];
            value.Dispose();
        }), n);
        Report("  (one GIL) torch_export.export(t) vectorcall + decref", () => UnderGil(n, () =>
            OwnedReference.DecRef(DirectCall.CallRaw(CPython.Address(TorchTensor.PolicyFunction("export")), tensor.ObjectAddress, "export"))), n);
        using var numpyMethod = PythonRuntime.Run(() => TorchTensor.Import().GetAttr("Tensor").GetAttr("numpy"));
        var lambda = ((InProcessRef)identity).Object;
        Report("  (one GIL) Tensor.numpy(t) vectorcall + decref", () => UnderGil(n, () =>
            OwnedReference.DecRef(DirectCall.CallRaw(CPython.Address(numpyMethod), tensor.ObjectAddress, "numpy"))), n);
        Report("  (one GIL) identity(t) (a Python function) vectorcall + decref", () => UnderGil(n, () =>
            OwnedReference.DecRef(DirectCall.CallRaw(CPython.Address(lambda), tensor.ObjectAddress, "lambda"))), n);
        Report("  TensorArgument.TryCreate(float[16])", () => Loop(n, () => TensorArgument.TryCreate(floats, out _)), n);
        PythonRuntime.Run(() =>
        {
            rawTimer.Dispose();
            policyTimer.Dispose();
            callTimer.Dispose();
            return 0;
        });
        return 0;
    }

    private static double Timeit(PyObject timer, int n) => PythonRuntime.Run(() =>
    {
        using var number = new PyInt(n);
        using var seconds = timer.InvokeMethod("timeit", number);
        return seconds.As<double>() * 1e6;
    });

    private static double Loop(int n, Action action)
    {
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < n; i++)
            action();
        return watch.Elapsed.TotalMicroseconds;
    }

    private static double UnderGil(int n, Action action)
    {
        using var gil = PythonRuntime.AcquireGil();
        return Loop(n, action);
    }

    private static void Report(string what, Func<double> totalMicroseconds, int n)
    {
        _ = totalMicroseconds(); // warm-up round
        var rounds = new double[Rounds];
        for (var i = 0; i < Rounds; i++)
            rounds[i] = totalMicroseconds() / n;
        var median = BenchHost.Median(rounds);
        Console.WriteLine($"{median,8:0.000}  (min {rounds[0]:0.000})  {what}");
    }
}
