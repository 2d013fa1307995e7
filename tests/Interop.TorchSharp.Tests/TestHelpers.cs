using Interop.Embedding;
using Interop.NumPy;
using Python.Runtime;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

internal static class TorchSharpData
{
    /// <summary>The tensor's data address, through the library's own export of THSTensor_data (the same value NumPy gets).</summary>
    public static nint Address(torch.Tensor t)
    {
        using var a = t.AsNumPy();
        return a.Address;
    }
}

internal static class NumPyCheck
{
    /// <summary>Same shape, dtype and C-order bytes, as NumPy sees them.</summary>
    public static bool SameArray(NDArray a, NDArray b) => PythonRuntime.Run(() =>
    {
        using var check = PythonEngine.Eval("lambda a, b: a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()");
        using var result = check.Invoke(a.PyObject, b.PyObject);
        return result.IsTrue();
    });
}

/// <summary>A Python object from an expression, released with the GIL (a pythonnet object must never be disposed without it).</summary>
internal sealed class PyHandle(string expression) : IDisposable
{
    public PyObject Object { get; } = PythonRuntime.Run(() => PythonEngine.Eval(expression));

    public override string ToString() => PythonRuntime.Run(() => Object.ToString() ?? "");

    public void Dispose()
    {
        using var gil = PythonRuntime.AcquireGil();
        Object.Dispose();
    }
}
