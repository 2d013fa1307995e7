// Design notes: a typed handle for a NumPy ndarray. It owns one Python reference (released on Dispose,
// with the GIL). Metadata comes from one buffer acquisition (format, shape, strides), never from
// attribute lookups on hot paths. Names say the memory policy: View*/As* share, To*/Copy*/From* copy.
using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Interop.Buffers;
using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Embedding;
using Interop.Errors;
using Interop.Native;
using Python.Runtime;

namespace Interop.NumPy;

/// <summary>A NumPy ndarray living in the embedded interpreter.</summary>
public sealed class NDArray : IDisposable
{
    private readonly OwnedReference _reference; // a raw reference from the direct call path, or a pythonnet object

    private NDArray(OwnedReference reference) => _reference = reference;

    /// <summary>The underlying Python object (for passing to Python code). Valid until <see cref="Dispose"/> (which disposes it).</summary>
    public PyObject PyObject => _reference.PyObject(typeof(NDArray));

    /// <summary>The PyObject* (borrowed; read it with the GIL held, like <see cref="PyObject"/>).</summary>
    internal nint ObjectAddress => _reference.Address(typeof(NDArray));

    /// <summary>Wraps a Python object that must be a <c>numpy.ndarray</c>; takes a new reference.</summary>
    /// <exception cref="ArgumentException"><paramref name="obj"/> is not an ndarray.</exception>
    public static NDArray Wrap(PyObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return PythonRuntime.Run(() =>
        {
            _ = Native.CPython.Address(obj); // a disposed object (null handle) throws ObjectDisposedException, never reaches CPython
            using var np = NumPyModule.Import();
            using var ndarray = np.GetAttr("ndarray");
            if (!obj.IsInstance(ndarray))
                throw new ArgumentException($"Expected a numpy.ndarray, got {obj.GetPythonType().Name}.", nameof(obj));
            return Own(Native.CPython.Borrow(Native.CPython.Address(obj)));
        });
    }

    /// <summary>Evaluates a Python expression (with <c>np</c> imported) that yields an ndarray. Handy for tests and scripts.</summary>
    public static NDArray Evaluate(string expression) => PythonRuntime.Run(() =>
    {
        using var np = NumPyModule.Import();
        using var scope = Py.CreateScope();
        scope.Set("np", np);
        PyObject value;
        using (PythonWarnings.Capture("NDArray.Evaluate"))
            value = scope.Eval(expression);
        using (value)
            return Wrap(value);
    });

    /// <summary>The array's dimensions.</summary>
    public long[] Shape => Describe().Shape;

    /// <summary>
    /// The array's strides in bytes: NumPy's <c>arr.strides</c>. (Where a stride cannot matter, a dimension of length 1 or
    /// a zero-size array, NumPy's value may differ from the strides the buffer exports, which views report.)
    /// </summary>
    public long[] Strides => Attribute(a =>
    {
        using var strides = a.GetAttr("strides");
        return strides.As<long[]>();
    });

    /// <summary>The array's dtype (from the dtype table).</summary>
    /// <exception cref="UnsupportedDTypeException">The dtype is not in the table.</exception>
    public DType DType => Describe().DType;

    /// <summary>NumPy's <c>str(arr.dtype)</c>, also for dtypes outside the table.</summary>
    public string DTypeName => Attribute(a =>
    {
        using var dtype = a.GetAttr("dtype");
        return dtype.ToString() ?? "?";
    });

    /// <summary>True when the array's bytes are big-endian.</summary>
    public bool IsBigEndian => Describe().BigEndian;

    /// <summary><c>arr.flags.writeable</c>.</summary>
    public bool IsWriteable => Attribute(a =>
    {
        using var flags = a.GetAttr("flags");
        using var writeable = flags.GetAttr("writeable");
        return writeable.As<bool>();
    });

    /// <summary>The address of element [0, ...] (<c>arr.__array_interface__['data'][0]</c> equivalent).</summary>
    public nint Address => Describe().Address;

    /// <summary>A zero-copy read-only view. Dispose it to release the buffer.</summary>
    public ArrayView<T> ViewReadOnly<T>() where T : unmanaged => CreateView<T>(writable: false);

    /// <summary>A zero-copy writable view; writes are seen by NumPy. Dispose it to release the buffer.</summary>
    /// <exception cref="ReadOnlyBufferException">The array is read-only.</exception>
    public ArrayView<T> View<T>() where T : unmanaged => CreateView<T>(writable: true);

    /// <summary>Copies the elements in C order into a new array (gathering strides, swapping bytes if needed; bools canonical: 0 or 1).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array holds (<see cref="Array.MaxLength"/>): copy in chunks with <see cref="CopyTo{T}(long, Span{T})"/>.</exception>
    public T[] ToArray<T>() where T : unmanaged
    {
        using var view = CopySource<T>();
        return view.ToArray();
    }

    /// <summary>Copies the elements in C order into <paramref name="destination"/> (bools canonical).</summary>
    /// <exception cref="TooManyElementsException">More than 2^31 - 1 elements: copy in chunks with <see cref="CopyTo{T}(long, Span{T})"/>.</exception>
    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        using var view = CopySource<T>();
        view.CopyTo(destination);
    }

    /// <summary>
    /// Copies <paramref name="destination"/>.Length elements, from C-order index <paramref name="start"/> on, into
    /// <paramref name="destination"/>: a chunk, for arrays of any size (more than a span or a .NET array holds included).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the array.</exception>
    public void CopyTo<T>(long start, Span<T> destination) where T : unmanaged
    {
        using var view = CopySource<T>();
        view.CopyTo(start, destination);
    }

    /// <summary>
    /// Copies the elements in C order into an array rented from <paramref name="pool"/> (default
    /// <see cref="ArrayPool{T}.Shared"/>); dispose the result to return it. For repeated copies of large arrays: a
    /// reused array skips the allocation and the first touch of fresh pages that <see cref="ToArray{T}"/> pays.
    /// </summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array holds.</exception>
    public PooledArray<T> ToPooledArray<T>(ArrayPool<T>? pool = null) where T : unmanaged
    {
        using var view = CopySource<T>();
        var result = new PooledArray<T>(pool ?? ArrayPool<T>.Shared, ElementAccess<T>.ArrayLength(view.Length, nameof(ToPooledArray)));
        try
        {
            view.CopyTo(0, result.Span);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Copies the elements into a new <see cref="Tensor{T}"/> of the array's shape (C order).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array (a tensor's storage) holds.</exception>
    public Tensor<T> ToTensor<T>() where T : unmanaged
    {
        using var view = CopySource<T>();
        return view.ToTensor();
    }

    /// <summary>Copies the elements into a new .NET array of the array's rank (<c>T[,]</c>, <c>T[,,]</c>, ...; rank 0 gives <c>T[1]</c>).</summary>
    /// <exception cref="TooManyElementsException">More elements than a .NET array holds.</exception>
    public Array ToMultidimensionalArray<T>() where T : unmanaged
    {
        using var view = CopySource<T>();
        var result = NewMultidimensionalArray<T>(view.Shape, view.Length);
        view.CopyTo(0, MemoryMarshal.CreateSpan(ref Unsafe.As<byte, T>(ref MemoryMarshal.GetArrayDataReference(result)), result.Length));
        return result;
    }

    /// <summary>A new .NET array of <paramref name="shape"/>'s rank (rank 0: one element), or <see cref="TooManyElementsException"/>.</summary>
    internal static Array NewMultidimensionalArray<T>(ReadOnlySpan<nint> shape, long count) where T : unmanaged
    {
        ElementAccess<T>.ArrayLength(count, nameof(ToMultidimensionalArray));
        var lengths = new int[shape.Length == 0 ? 1 : shape.Length];
        lengths[0] = 1;
        for (var i = 0; i < shape.Length; i++)
            lengths[i] = ElementAccess<T>.ArrayLength(shape[i], nameof(ToMultidimensionalArray)); // a zero-size array may still have a huge dimension
        return Array.CreateInstance(typeof(T), lengths);
    }

    // ---- .NET -> NumPy: copies ----------------------------------------------------------------

    /// <summary>
    /// Copies <paramref name="source"/> (C order) into this array's existing memory, like <c>arr[...] = source</c> in
    /// NumPy: scatters over the strides and writes big-endian arrays in their own byte order. No allocation, so it
    /// runs at memory speed where <see cref="CopyFrom{T}(ReadOnlySpan{T}, ReadOnlySpan{long})"/> pays for fresh pages.
    /// </summary>
    /// <exception cref="ElementTypeMismatchException"><typeparamref name="T"/> is not the array's element type.</exception>
    /// <exception cref="ReadOnlyBufferException">The array is read-only.</exception>
    /// <exception cref="ArgumentException"><paramref name="source"/> does not hold exactly as many elements as the array.</exception>
    public void Assign<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        _ = ObjectAddress; // fail fast when disposed; read again with the GIL
        PythonBuffer buffer;
        using (PythonRuntime.AcquireGil())
            buffer = PythonBuffer.Acquire(ObjectAddress, writable: true);
        using (buffer)
            buffer.Scatter(source); // without the GIL; the acquired buffer keeps the memory alive
    }

    /// <summary>Copies <paramref name="data"/> into a new ndarray of <paramref name="shape"/> (default: 1-d) and the dtype of <typeparamref name="T"/>.</summary>
    /// <exception cref="ArgumentException">The shape does not hold exactly <c>data.Length</c> elements.</exception>
    public static unsafe NDArray CopyFrom<T>(ReadOnlySpan<T> data, params ReadOnlySpan<long> shape) where T : unmanaged
    {
        fixed (T* source = data)
            return CopyFromMemory((nint)source, DType.Of<T>(), shape.IsEmpty ? [data.Length] : shape, data.Length);
    }

    /// <summary>Copies a .NET array of any rank (<c>T[]</c>, <c>T[,]</c>, <c>T[,,]</c>, ...) into a new ndarray of the same shape.</summary>
    public static unsafe NDArray CopyFrom(Array array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var dtype = DType.Of(array.GetType().GetElementType()!);
        var shape = Enumerable.Range(0, array.Rank).Select(d => (long)array.GetLength(d)).ToArray();
        fixed (byte* source = &MemoryMarshal.GetArrayDataReference(array))
            return CopyFromMemory((nint)source, dtype, shape, array.LongLength);
    }

    /// <summary>Copies a (possibly strided) tensor span into a new C-order ndarray of the same shape, at any size.</summary>
    public static unsafe NDArray CopyFrom<T>(scoped in ReadOnlyTensorSpan<T> tensor) where T : unmanaged
    {
        var shape = tensor.Lengths.ToArray().Select(d => (long)d).ToArray();
        var result = Empty(DType.Of<T>(), shape);
        try
        {
            using var view = result.View<T>();
            tensor.CopyTo(view.AsTensorSpan());
            if (typeof(T) == typeof(bool))
                StridedCopy.CanonicalizeBooleans((byte*)view.Address, view.Length);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>A new, uninitialised C-order ndarray (<c>np.empty</c>).</summary>
    public static NDArray Empty(DType dtype, params ReadOnlySpan<long> shape)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        var typestr = dtype.NumPyTypeString ?? throw new UnsupportedDTypeException(dtype.Name + " (NumPy has no such dtype)", null);
        foreach (var d in shape)
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
        using var gil = PythonRuntime.AcquireGil();
        try
        {
            return Own(OwnedReference.Take(EmptyRaw(typestr, shape)));
        }
        catch (PythonException e)
        {
            throw PythonErrors.Translate(e);
        }
    }

    // np.empty(shape, dtype) straight through CPython's vectorcall, with np.empty and the dtype looked up once; a new
    // reference. Requires the GIL.
    private static nint EmptyRaw(string typestr, ReadOnlySpan<long> shape)
    {
        var (empty, type) = EmptyFunction(typestr);
        var pyShape = DirectCall.IntTupleRaw(shape, "np.empty");
        try
        {
            ReadOnlySpan<nint> args = [pyShape, CPython.Address(type)];
            return DirectCall.CallRaw(CPython.Address(empty), args, 2, 0, "np.empty");
        }
        finally
        {
            OwnedReference.DecRef(pyShape);
        }
    }

    /// <summary>
    /// A new C-order ndarray holding a copy of <paramref name="bytes"/> (C-order, native-order elements of
    /// <paramref name="dtype"/>), as a new reference: for callers that hold the GIL and hand the array straight to Python
    /// (the in-process session's arguments). Requires the GIL; copies with it held.
    /// </summary>
    internal static unsafe nint CopyToNewArray(ReadOnlySpan<byte> bytes, DType dtype, ReadOnlySpan<long> shape)
    {
        Gil.AssertHeld();
        var typestr = dtype.NumPyTypeString ?? throw new UnsupportedDTypeException(dtype.Name + " (NumPy has no such dtype)", null);
        var count = bytes.Length / dtype.ItemSize;
        Layout.CheckShape(shape, count);
        var array = EmptyRaw(typestr, shape);
        try
        {
            if (dtype != DType.Bool)
            {
                PythonBuffer.CopyIntoContiguous(array, bytes); // np.empty's array is C-contiguous: no full buffer request needed
                return array;
            }
            using var buffer = PythonBuffer.Acquire(array, writable: true);
            fixed (byte* source = bytes)
                Buffer.MemoryCopy(source, (void*)buffer.Pointer, buffer.ByteLength, bytes.Length);
            StridedCopy.CanonicalizeBooleans((byte*)buffer.Pointer, count);
            return array;
        }
        catch
        {
            OwnedReference.DecRef(array);
            throw;
        }
    }

    // np.empty and np.dtype(typestr) per dtype, looked up once with the GIL (they live as long as the interpreter; the
    // GIL serialises the dictionary). The first lookup goes through NumPyModule.Import: a typed error without NumPy.
    private static PyObject? s_empty;
    private static readonly Dictionary<string, PyObject> s_dtypes = new(StringComparer.Ordinal);

    private static (PyObject Empty, PyObject DType) EmptyFunction(string typestr)
    {
        Gil.AssertHeld();
        if (s_empty is null)
        {
            using var np = NumPyModule.Import();
            s_empty = np.GetAttr("empty");
        }
        if (!s_dtypes.TryGetValue(typestr, out var type))
        {
            using var np = NumPyModule.Import();
            using var name = new PyString(typestr);
            s_dtypes[typestr] = type = np.InvokeMethod("dtype", name);
        }
        return (s_empty, type);
    }

    /// <summary>Copies C-order, native-order element bytes of <paramref name="dtype"/> into a new ndarray of <paramref name="shape"/>.</summary>
    internal static unsafe NDArray CopyFrom(ReadOnlySpan<byte> bytes, DType dtype, ReadOnlySpan<long> shape)
    {
        fixed (byte* source = bytes)
            return CopyFromMemory((nint)source, dtype, shape, bytes.Length / dtype.ItemSize);
    }

    // Sizes are 64-bit throughout (a float[] of 600 million elements is 2.4 GB of bytes, more than a byte span holds).
    // The source must stay pinned by the caller; the copy runs without the GIL (the acquired buffer keeps the array alive).
    private static unsafe NDArray CopyFromMemory(nint source, DType dtype, ReadOnlySpan<long> shape, long count)
    {
        Layout.CheckShape(shape, count);
        var result = Empty(dtype, shape);
        try
        {
            PythonBuffer buffer;
            using (PythonRuntime.AcquireGil())
                buffer = PythonBuffer.Acquire(result.ObjectAddress, writable: true);
            using (buffer)
            {
                var bytes = checked(count * dtype.ItemSize);
                Buffer.MemoryCopy((void*)source, (void*)buffer.Pointer, buffer.ByteLength, bytes);
                if (dtype == DType.Bool)
                    StridedCopy.CanonicalizeBooleans((byte*)buffer.Pointer, (nint)count);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    // ---- .NET -> NumPy: zero-copy -------------------------------------------------------------

    /// <summary>
    /// An ndarray over <paramref name="array"/>'s own memory: <b>no copy</b>, writable both ways. The array stays pinned
    /// until NumPy drops the last array or tensor that uses it (observable through <see cref="Diagnostics.LiveObjects.ExportedToPython"/>).
    /// </summary>
    public static NDArray Share<T>(T[] array, params ReadOnlySpan<long> shape) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(array);
        return Share(new Memory<T>(array), shape);
    }

    /// <summary>An ndarray over <paramref name="memory"/> (pinned until NumPy drops it). <b>No copy</b>; writable both ways.</summary>
    public static unsafe NDArray Share<T>(Memory<T> memory, params ReadOnlySpan<long> shape) where T : unmanaged
    {
        var dims = shape.IsEmpty ? [memory.Length] : shape.ToArray();
        Layout.CheckShape(dims, memory.Length);
        var pin = memory.Pin();
        return ShareCore((nint)pin.Pointer, DType.Of<T>(), dims, null, pin, owner: null, readOnly: false);
    }

    /// <summary>
    /// An ndarray over native memory at <paramref name="address"/>. <b>No copy.</b> <paramref name="owner"/> (may be null)
    /// is disposed once NumPy drops the last array that uses the memory. <paramref name="strides"/> are in bytes (empty: C order).
    /// </summary>
    public static NDArray Share(nint address, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, IDisposable? owner, bool readOnly)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        if (address == 0)
            throw new ArgumentException("The address is null.", nameof(address));
        if (!strides.IsEmpty && strides.Length != shape.Length)
            throw new ArgumentException($"{strides.Length} strides given for {shape.Length} dimensions.", nameof(strides));
        foreach (var d in shape)
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
        return ShareCore(address, dtype, shape.ToArray(), strides.IsEmpty ? null : strides.ToArray(), default, owner, readOnly);
    }

    private static NDArray ShareCore(nint address, DType dtype, long[] shape, long[]? strides, System.Buffers.MemoryHandle pin, IDisposable? owner, bool readOnly)
    {
        var typestr = dtype.NumPyTypeString;
        if (typestr is null)
        {
            pin.Dispose();
            throw new UnsupportedDTypeException(dtype.Name + " (NumPy has no such dtype)", null);
        }
        using var gil = PythonRuntime.AcquireGil();
        PyObject capsule;
        try
        {
            capsule = ExportOwner.CreateCapsule(pin, owner);
        }
        catch
        {
            pin.Dispose();
            throw;
        }
        try
        {
            using (capsule)
            using (var exports = Py.Import(PythonRuntime.HelperPackage + ".exports"))
            using (var pyShape = new PyTuple(shape.Select(d => (PyObject)new PyInt(d)).ToArray()))
            using (var pyStrides = strides is null ? PyObject.None : new PyTuple(strides.Select(d => (PyObject)new PyInt(d)).ToArray()))
            using (var pyAddress = new PyInt(address))
            using (var pyType = new PyString(typestr))
            using (var pyReadOnly = new PyInt(readOnly ? 1 : 0))
                return Own(exports.InvokeMethod("wrap", capsule, pyAddress, pyShape, pyType, pyStrides, pyReadOnly));
        }
        catch (PythonException e)
        {
            throw PythonErrors.Translate(e);
        }
    }

    /// <summary>Returns <c>str(arr)</c>.</summary>
    public override string ToString() => Attribute(a => a.ToString() ?? "");

    /// <summary>Releases the Python reference (with the GIL, at once). Harmless when called again.</summary>
    public void Dispose() => _reference.Dispose();

    internal static NDArray Own(PyObject obj) => new(OwnedReference.Take(obj));

    internal static NDArray Own(OwnedReference reference) => new(reference);

    private ArrayView<T> CreateView<T>(bool writable) where T : unmanaged
    {
        _ = ObjectAddress; // fail fast when disposed; read again with the GIL
        using var gil = PythonRuntime.AcquireGil();
        return Wrap<T>(PythonBuffer.Acquire(ObjectAddress, writable), writable);
    }

    // Copies accept big-endian data (NumPy converts it to native order first) but otherwise validate like views.
    private ArrayView<T> CopySource<T>() where T : unmanaged
    {
        _ = ObjectAddress; // fail fast when disposed; read again with the GIL
        using var gil = PythonRuntime.AcquireGil();
        var buffer = PythonBuffer.Acquire(ObjectAddress, writable: false);
        if (!buffer.Format.IsNativeOrder)
        {
            buffer.Dispose();
            using var swapped = Swapped(PyObject);
            return ViewOf<T>(swapped, writable: false);
        }
        return Wrap<T>(buffer, writable: false);
    }

    /// <summary>Acquires the buffer and wraps it. Requires the GIL.</summary>
    private static ArrayView<T> ViewOf<T>(PyObject obj, bool writable) where T : unmanaged =>
        Wrap<T>(PythonBuffer.Acquire(obj, writable), writable);

    /// <summary>Wraps an acquired buffer; releases it if the view refuses it.</summary>
    private static ArrayView<T> Wrap<T>(PythonBuffer buffer, bool writable) where T : unmanaged
    {
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
        _ = ObjectAddress; // fail fast when disposed; read again with the GIL
        using var gil = PythonRuntime.AcquireGil();
        using var buffer = PythonBuffer.Acquire(ObjectAddress, writable: false);
        return (buffer.Shape.Select(s => (long)s).ToArray(), buffer.Strides.Select(s => (long)s).ToArray(),
                buffer.DType, buffer.Format.BigEndian, buffer.Pointer);
    }

    private T Attribute<T>(Func<PyObject, T> read)
    {
        _ = PyObject;
        // Read again with the GIL held: Dispose releases the object with the GIL, so a Dispose on another thread cannot
        // hand CPython a released (null) object between the check and the use.
        return PythonRuntime.Run(() => read(PyObject));
    }
}
