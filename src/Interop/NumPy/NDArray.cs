// Design notes: a typed handle for a NumPy ndarray. It owns one Python reference (released on Dispose,
// with the GIL). Metadata comes from one buffer acquisition (format, shape, strides), never from
// attribute lookups on hot paths. Names say the memory policy: View*/As* share, To*/Copy*/From* copy.
using Interop.Buffers;
using Interop.DTypes;
using Interop.Embedding;
using Interop.Errors;
using Python.Runtime;

namespace Interop.NumPy;

/// <summary>A NumPy ndarray living in the embedded interpreter.</summary>
public sealed class NDArray : IDisposable
{
    private PyObject? _object;

    private NDArray(PyObject obj) => _object = obj;

    /// <summary>The underlying Python object (for passing to Python code). Valid until <see cref="Dispose"/>.</summary>
    public PyObject PyObject => _object ?? throw new ObjectDisposedException(nameof(NDArray));

    /// <summary>Wraps a Python object that must be a <c>numpy.ndarray</c>; takes a new reference.</summary>
    /// <exception cref="ArgumentException"><paramref name="obj"/> is not an ndarray.</exception>
    public static NDArray Wrap(PyObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return PythonRuntime.Run(() =>
        {
            using var np = NumPyModule.Import();
            using var ndarray = np.GetAttr("ndarray");
            if (!obj.IsInstance(ndarray))
                throw new ArgumentException($"Expected a numpy.ndarray, got {obj.GetPythonType().Name}.", nameof(obj));
            return new NDArray(Native.CPython.Borrow(Native.CPython.Address(obj)));
        });
    }

    /// <summary>Evaluates a Python expression (with <c>np</c> imported) that yields an ndarray. Handy for tests and scripts.</summary>
    public static NDArray Evaluate(string expression) => PythonRuntime.Run(() =>
    {
        using var np = NumPyModule.Import();
        using var scope = Py.CreateScope();
        scope.Set("np", np);
        using var value = scope.Eval(expression);
        return Wrap(value);
    });

    /// <summary>The array's dimensions.</summary>
    public long[] Shape => Describe().Shape;

    /// <summary>The array's strides in bytes.</summary>
    public long[] Strides => Describe().Strides;

    /// <summary>The array's dtype (from the dtype table).</summary>
    /// <exception cref="UnsupportedDTypeException">The dtype is not in the table.</exception>
    public DType DType => Describe().DType;

    /// <summary>NumPy's <c>str(arr.dtype)</c>, also for dtypes outside the table.</summary>
    public string DTypeName => Attribute(a => a.GetAttr("dtype").ToString() ?? "?");

    /// <summary>True when the array's bytes are big-endian.</summary>
    public bool IsBigEndian => Describe().BigEndian;

    /// <summary><c>arr.flags.writeable</c>.</summary>
    public bool IsWriteable => Attribute(a => a.GetAttr("flags").GetAttr("writeable").As<bool>());

    /// <summary>The address of element [0, ...] (<c>arr.__array_interface__['data'][0]</c> equivalent).</summary>
    public nint Address => Describe().Address;

    /// <summary>A zero-copy read-only view. Dispose it to release the buffer.</summary>
    public ArrayView<T> ViewReadOnly<T>() where T : unmanaged => CreateView<T>(writable: false);

    /// <summary>A zero-copy writable view; writes are seen by NumPy. Dispose it to release the buffer.</summary>
    /// <exception cref="ReadOnlyBufferException">The array is read-only.</exception>
    public ArrayView<T> View<T>() where T : unmanaged => CreateView<T>(writable: true);

    /// <summary>Copies the elements in C order into a new array (gathering strides, swapping bytes if needed).</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        using var view = CopySource<T>();
        return view.ToArray();
    }

    /// <summary>Copies the elements in C order into <paramref name="destination"/>.</summary>
    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        using var view = CopySource<T>();
        view.CopyTo(destination);
    }

    /// <summary>Returns <c>str(arr)</c>.</summary>
    public override string ToString() => Attribute(a => a.ToString() ?? "");

    /// <summary>Releases the Python reference. Harmless when called again.</summary>
    public void Dispose()
    {
        var obj = Interlocked.Exchange(ref _object, null);
        if (obj is null || !PythonRuntime.IsRunning)
            return;
        using var gil = PythonRuntime.AcquireGil();
        obj.Dispose();
    }

    internal static NDArray Own(PyObject obj) => new(obj);

    private ArrayView<T> CreateView<T>(bool writable) where T : unmanaged
    {
        var obj = PyObject;
        using var gil = PythonRuntime.AcquireGil();
        var buffer = PythonBuffer.Acquire(obj, writable);
        try
        {
            return new ArrayView<T>(buffer, writable);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    // Copies accept big-endian data (they swap) but otherwise validate like views.
    private ArrayView<T> CopySource<T>() where T : unmanaged
    {
        var obj = PyObject;
        using var gil = PythonRuntime.AcquireGil();
        var buffer = PythonBuffer.Acquire(obj, writable: false);
        if (!buffer.Format.IsNativeOrder)
        {
            buffer.Dispose();
            using var swapped = Swapped(obj);
            return CopySourceFrom<T>(swapped);
        }
        try
        {
            return new ArrayView<T>(buffer, writable: false);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private static ArrayView<T> CopySourceFrom<T>(PyObject obj) where T : unmanaged
    {
        var buffer = PythonBuffer.Acquire(obj, writable: false);
        try
        {
            return new ArrayView<T>(buffer, writable: false);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private static PyObject Swapped(PyObject obj)
    {
        try
        {
            using var dtype = obj.GetAttr("dtype");
            using var native = dtype.InvokeMethod("newbyteorder", new PyString("="));
            return obj.InvokeMethod("astype", native);
        }
        catch (PythonException e)
        {
            throw PythonErrors.Translate(e);
        }
    }

    private (long[] Shape, long[] Strides, DType DType, bool BigEndian, nint Address) Describe()
    {
        var obj = PyObject;
        using var gil = PythonRuntime.AcquireGil();
        using var buffer = PythonBuffer.Acquire(obj, writable: false);
        return (buffer.Shape.Select(s => (long)s).ToArray(), buffer.Strides.Select(s => (long)s).ToArray(),
                buffer.DType, buffer.Format.BigEndian, buffer.Pointer);
    }

    private T Attribute<T>(Func<PyObject, T> read)
    {
        var obj = PyObject;
        return PythonRuntime.Run(() => read(obj));
    }
}
