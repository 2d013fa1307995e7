// Design notes: Python-side PyTorch, in a process that does not load TorchSharp (one libtorch per process).
// FromNumPy calls the real torch.from_numpy and Numpy() the real Tensor.numpy(): both share memory.
using Interop.Embedding;
using Interop.NumPy;
using Python.Runtime;

namespace Interop.Torch;

/// <summary>A <c>torch.Tensor</c> living in the embedded interpreter. Owns one Python reference.</summary>
public sealed class TorchTensor : IDisposable
{
    private PyObject? _object;

    private TorchTensor(PyObject obj) => _object = obj;

    /// <summary>The underlying Python object. Valid until <see cref="Dispose"/>.</summary>
    public PyObject PyObject => _object ?? throw new ObjectDisposedException(nameof(TorchTensor));

    /// <summary>
    /// <c>torch.from_numpy(array)</c>: a tensor that <b>shares memory</b> with <paramref name="array"/> (writes to
    /// either are seen by the other) and has the array's dtype. PyTorch's refusals surface as <see cref="Errors.PythonErrorException"/>.
    /// </summary>
    public static TorchTensor FromNumPy(NDArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var obj = array.PyObject;
        return PythonRuntime.Run(() =>
        {
            using var torch = Import();
            return new TorchTensor(torch.InvokeMethod("from_numpy", obj));
        });
    }

    /// <summary>Evaluates a Python expression (with <c>torch</c> and <c>np</c> imported) that yields a tensor.</summary>
    public static TorchTensor Evaluate(string expression) => PythonRuntime.Run(() =>
    {
        using var torch = Import();
        using var scope = Py.CreateScope();
        scope.Set("torch", torch);
        scope.Exec("import numpy as np");
        var value = scope.Eval(expression);
        using var tensorType = torch.GetAttr("Tensor");
        if (!value.IsInstance(tensorType))
        {
            value.Dispose();
            throw new ArgumentException($"'{expression}' did not produce a torch.Tensor.", nameof(expression));
        }
        return new TorchTensor(value);
    });

    /// <summary>
    /// <c>tensor.numpy()</c>: an ndarray that <b>shares memory</b> with this tensor. PyTorch requires a CPU tensor
    /// that does not require grad; its refusal surfaces as <see cref="Errors.PythonErrorException"/>.
    /// </summary>
    public NDArray Numpy()
    {
        var obj = PyObject;
        return PythonRuntime.Run(() => NDArray.Own(obj.InvokeMethod("numpy")));
    }

    /// <summary><c>str(tensor.dtype)</c>, e.g. <c>torch.float32</c>.</summary>
    public string DTypeName => Read(t =>
    {
        using var dtype = t.GetAttr("dtype");
        return dtype.ToString() ?? "?";
    });

    /// <summary><c>tensor.shape</c>.</summary>
    public long[] Shape => Read(t =>
    {
        using var shape = t.GetAttr("shape");
        return shape.As<long[]>();
    });

    /// <summary><c>tensor.data_ptr()</c>: the address of the first element.</summary>
    public nint DataPointer => Read(t =>
    {
        using var pointer = t.InvokeMethod("data_ptr");
        return (nint)pointer.As<long>();
    });

    /// <summary><c>str(tensor.device)</c>.</summary>
    public string Device => Read(t =>
    {
        using var device = t.GetAttr("device");
        return device.ToString() ?? "?";
    });

    /// <summary>Returns <c>str(tensor)</c>.</summary>
    public override string ToString() => Read(t => t.ToString() ?? "");

    /// <summary>Releases the Python reference. Harmless when called again.</summary>
    public void Dispose()
    {
        var obj = Interlocked.Exchange(ref _object, null);
        if (obj is null || !PythonRuntime.IsRunning)
            return;
        using var gil = PythonRuntime.AcquireGil();
        obj.Dispose();
    }

    /// <summary>Imports torch (with the GIL held), with a typed error when it is missing.</summary>
    internal static PyObject Import()
    {
        Gil.AssertHeld();
        PythonRuntime.RequirePackage("torch");
        LibTorchGuard.CheckBeforeImportingPythonTorch(); // one libtorch per process: refuse before loading a second
        return Py.Import("torch");
    }

    private T Read<T>(Func<PyObject, T> read)
    {
        var obj = PyObject;
        return PythonRuntime.Run(() => read(obj));
    }
}
