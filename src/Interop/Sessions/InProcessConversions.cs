// Design notes: the in-process session's one place for value conversion, both directions.
// - .NET -> Python (ToPython): scalars and strings become Python objects; tensors (the rule is
//   TensorArgument.TryCreate, shared with every session kind) are COPIED into a fresh NumPy array and handed to
//   torch.from_numpy when PyTorch is installed; NDArray, TorchTensor, raw PyObject and PythonRef of this session
//   pass by reference. Objects created here are owned by a Temporaries list and released after the call.
// - Python -> .NET (ToValue) receives results already exported by interop_helpers.calls, or by Export here for
//   default-grad calls (tensors are NumPy arrays sharing the prepared tensor's memory). An array becomes a tensor value over its Python buffer (zero-copy).
// All methods require the GIL.
using System.Collections;
using System.Runtime.CompilerServices;
using Interop.Buffers;
using Interop.Embedding;
using Interop.Errors;
using Interop.Native;
using Interop.NumPy;
using Interop.Torch;
using Python.Runtime;

namespace Interop.Sessions;

internal static class InProcessConversions
{
    /// <summary>Python objects created for one call; released (with the GIL held) when disposed.</summary>
    internal sealed class Temporaries : IDisposable
    {
        private readonly List<PyObject> _objects = [];
        private List<nint>? _raw; // new references made through Native/DirectCall

        /// <summary>What array arguments of this call become (<see cref="CallOptions.Arrays"/>).</summary>
        public ArrayConversion Arrays { get; init; }

        public PyObject Own(PyObject obj)
        {
            _objects.Add(obj);
            return obj;
        }

        /// <summary>Takes over the new reference <paramref name="address"/> (not null) and returns it.</summary>
        public nint OwnRaw(nint address)
        {
            (_raw ??= []).Add(address);
            return address;
        }

        public void Dispose()
        {
            if (_raw is not null)
            {
                for (var i = _raw.Count - 1; i >= 0; i--)
                    OwnedReference.DecRef(_raw[i]);
                _raw.Clear();
            }
            for (var i = _objects.Count - 1; i >= 0; i--)
                _objects[i].Dispose();
            _objects.Clear();
        }
    }

    /// <summary>The positional arguments as a tuple (owned by <paramref name="temporaries"/>; never released by the caller).</summary>
    public static nint ToTuple(InProcessSession session, IReadOnlyList<object?> args, Temporaries temporaries)
    {
        Span<nint> items = args.Count <= 8 ? stackalloc nint[args.Count] : new nint[args.Count];
        for (var i = 0; i < items.Length; i++)
            items[i] = ToPython(session, args[i], i < s_argumentNames.Length ? s_argumentNames[i] : $"argument {i}", temporaries, 0, null);
        return temporaries.OwnRaw(DirectCall.TupleRaw(items, "the arguments' tuple"));
    }

    private static readonly string[] s_argumentNames = [.. Enumerable.Range(0, 8).Select(i => $"argument {i}")];

    /// <summary>The keyword arguments as a dict, or None when there are none (calls.call accepts both).</summary>
    public static PyObject ToDict(InProcessSession session, IReadOnlyDictionary<string, object?>? kwargs, Temporaries temporaries)
    {
        if (kwargs is null || kwargs.Count == 0)
            return PyObject.None;
        var dict = (PyDict)temporaries.Own(new PyDict());
        foreach (var (key, value) in kwargs)
        {
            ConversionLimits.CheckText(key, $"keyword argument '{key}' (its name)");
            using var item = CPython.Borrow(ToPython(session, value, $"keyword argument '{key}'", temporaries, 0, null));
            dict[key] = item;
        }
        return dict;
    }

    /// <summary>
    /// Converts one argument at nesting <paramref name="depth"/> (<paramref name="open"/>: the containers around it, for
    /// the cycle check; null at the top); the result is the address of an object owned by <paramref name="temporaries"/>
    /// or by the caller's value (borrowed: never release it).
    /// </summary>
    private static nint ToPython(InProcessSession session, object? value, string where, Temporaries temporaries, int depth, List<object>? open)
    {
        Gil.AssertHeld();
        ConversionLimits.CheckDepth(value, depth, where);
        switch (value)
        {
            case null:
                return CPython.Address(PyObject.None);
            case bool b:
                return CPython.Address(PythonBools.Get(b));
            case sbyte or byte or short or ushort or int or uint or long:
                return temporaries.OwnRaw(DirectCall.Int64(System.Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture), where));
            case ulong u:
                return CPython.Address(temporaries.Own(new PyInt(u)));
            case float or double:
                return temporaries.OwnRaw(DirectCall.Double(System.Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture), where));
            case Half h: // not IConvertible
                return temporaries.OwnRaw(DirectCall.Double((double)h, where));
            case string s:
                ConversionLimits.CheckText(s, where);
                return CPython.Address(temporaries.Own(new PyString(s)));
            case PythonRef r:
                if (r is not InProcessRef own || !ReferenceEquals(r.Session, session))
                    throw new UnsupportedArgumentException(value.GetType(), where, "a PythonRef of another session; objects cannot move between sessions");
                return CPython.Address(own.Object);
            case NDArray array:
                return array.ObjectAddress;
            case TorchTensor tensor:
                return tensor.ObjectAddress;
            case PyObject obj:
                return CPython.Address(obj); // a disposed PyObject (null handle) throws ObjectDisposedException here
            case PythonValue result: // a result passed back: the same rule in every session kind (PythonValue.ToArgument)
                return ToPython(session, result.ToArgument(where), where, temporaries, depth, open);
            case ReadOnlyMemory<byte> bytes:
                return CPython.Address(temporaries.Own(PyBytesOf(bytes.Span)));
            case Memory<byte> bytes:
                return CPython.Address(temporaries.Own(PyBytesOf(bytes.Span)));
        }
        if (TensorArgument.TryCreate(value, out var tensorArgument))
        {
            ConversionLimits.CheckRank(tensorArgument!, value.GetType(), where);
            return Tensor(session, tensorArgument!, temporaries);
        }
        if (value is Array { Rank: > 1 })
            throw new UnsupportedArgumentException(value.GetType(), where, "a multi-dimensional array of an element type outside the dtype table");
        if (value is not (IDictionary or ITuple or IEnumerable))
            throw new UnsupportedArgumentException(value.GetType(), where);
        open ??= [];
        ConversionLimits.CheckCycle(value, where, open);
        open.Add(value);
        try
        {
            switch (value)
            {
                case IDictionary dictionary:
                    var dict = (PyDict)temporaries.Own(new PyDict());
                    foreach (DictionaryEntry entry in dictionary)
                    {
                        if (entry.Key is not string key)
                            throw new UnsupportedArgumentException(entry.Key.GetType(), where + " (a dictionary key)", "dictionary keys must be strings");
                        ConversionLimits.CheckText(key, where + " (a dictionary key)");
                        using var item = CPython.Borrow(ToPython(session, entry.Value, $"{where}['{key}']", temporaries, depth + 1, open));
                        dict[key] = item;
                    }
                    return CPython.Address(dict);
                case ITuple tuple:
                    var tupleItems = new nint[tuple.Length];
                    for (var i = 0; i < tupleItems.Length; i++)
                        tupleItems[i] = ToPython(session, tuple[i], $"{where}[{i}]", temporaries, depth + 1, open);
                    return temporaries.OwnRaw(DirectCall.TupleRaw(tupleItems, where));
                default:
                    var items = new List<nint>();
                    foreach (var item in (IEnumerable)value)
                        items.Add(ToPython(session, item, $"{where}[{items.Count}]", temporaries, depth + 1, open));
                    return temporaries.OwnRaw(DirectCall.ListRaw(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(items), where));
            }
        }
        finally
        {
            open.RemoveAt(open.Count - 1);
        }
    }

    private static PyObject PyBytesOf(ReadOnlySpan<byte> bytes)
    {
        using var array = NDArray.CopyFrom(bytes, bytes.Length);
        return array.PyObject.InvokeMethod("tobytes");
    }

    private static nint Tensor(InProcessSession session, TensorArgument argument, Temporaries temporaries)
    {
        if (temporaries.Arrays == ArrayConversion.Torch && !session.HasTorch)
            throw new PythonPackageMissingException("torch", PythonRuntime.Installation.Executable);
        Span<long> shape = stackalloc long[argument.Shape.Count]; // at most ConversionLimits' rank
        for (var i = 0; i < shape.Length; i++)
            shape[i] = argument.Shape[i];
        var array = NDArray.CopyToNewArray(argument.Bytes, argument.DType, shape);
        if (!session.HasTorch || temporaries.Arrays == ArrayConversion.NumPy)
            return temporaries.OwnRaw(array);
        try
        {
            return temporaries.OwnRaw(DirectCall.CallRaw(CPython.Address(TorchTensor.FromNumpyFunction), array, "torch.from_numpy"));
        }
        finally
        {
            OwnedReference.DecRef(array); // the tensor keeps the array alive for the call
        }
    }

    /// <summary>
    /// Exports the raw result of <c>calls.call(..., export=False)</c> (a default-grad call), taking over the new reference
    /// <paramref name="result"/> and returning a new one: what <c>calls.export_tree(result, detach=, upcast=)</c> returns,
    /// with its two common cases taken here without Python frames: None, bools and exact ints and floats stay as they
    /// are (export_tree returns them unchanged), and a plain tensor goes straight to <c>Tensor.numpy()</c>
    /// (<see cref="TorchTensor.ExportPlainResult"/>). Everything else, and a tensor <c>Tensor.numpy()</c> refuses, goes
    /// through export_tree itself, so results and errors are the same. Requires the GIL and torch imported.
    /// </summary>
    public static nint Export(nint result, nint detach, nint upcast)
    {
        Gil.AssertHeld();
        InitializePlain();
        if (result == s_none || result == s_true || result == s_false)
            return result;
        var type = DirectCall.TypeOf(result);
        if (type == s_intType || type == s_floatType)
            return result;
        try
        {
            var exported = TorchTensor.ExportPlainResult(result);
            if (exported != 0)
                return exported;
            s_exportTree ??= ExportTreeFunction();
            s_exportKeywords ??= new PyTuple([new PyString("detach"), new PyString("upcast")]);
            ReadOnlySpan<nint> args = [result, detach, upcast];
            return DirectCall.CallRaw(CPython.Address(s_exportTree), args, 1, CPython.Address(s_exportKeywords), "calls.export_tree");
        }
        finally
        {
            OwnedReference.DecRef(result);
        }
    }

    private static PyObject ExportTreeFunction()
    {
        using var calls = Py.Import(PythonRuntime.HelperPackage + ".calls");
        return calls.GetAttr("export_tree");
    }

    private static PyObject? s_exportTree, s_exportKeywords; // calls.export_tree and ("detach", "upcast"): made once with the GIL, never disposed

    private static void InitializePlain()
    {
        if (s_floatType != 0)
            return;
        using var zero = new PyInt(0);
        using var half = new PyFloat(0.5);
        s_none = CPython.Address(PyObject.None);
        s_true = CPython.Address(PythonBools.Get(true));
        s_false = CPython.Address(PythonBools.Get(false));
        s_intType = DirectCall.TypeOf(zero);
        s_floatType = DirectCall.TypeOf(half); // last: its presence says all are set
    }

    // None, True, False and the exact types int and float: static, immortal objects, looked up once with the GIL;
    // numpy.ndarray (a static type too) once the first array result has been converted below.
    private static nint s_none, s_true, s_false, s_intType, s_floatType, s_ndarrayType;

    /// <summary>
    /// Converts a (policy-exported) result, taking over the new reference <paramref name="obj"/>: None, bools and plain
    /// ints and floats without a pythonnet object (the common results of small calls), everything else as below.
    /// </summary>
    public static PythonValue ToValue(InProcessSession session, nint obj)
    {
        Gil.AssertHeld();
        InitializePlain();
        PythonValue? plain = null;
        if (s_ndarrayType != 0 && DirectCall.TypeOf(obj) == s_ndarrayType)
        {
            BufferTensorData? array;
            try
            {
                array = BufferTensorData.TryCreate(obj);
            }
            catch
            {
                OwnedReference.DecRef(obj);
                throw;
            }
            if (array is not null)
                return PythonValue.FromTensor(array, NumPyArrayType);
            return ToValue(session, CPython.Own(obj)); // dtype outside the table or non-native order: an object, as below
        }
        if (obj == s_none)
            plain = PythonValue.FromNone();
        else if (obj == s_true || obj == s_false)
            plain = PythonValue.FromBool(obj == s_true);
        else
        {
            var type = DirectCall.TypeOf(obj);
            if (type == s_floatType)
                plain = PythonValue.FromDouble(DirectCall.AsDouble(obj, "float(result)"), "float");
            else if (type == s_intType && DirectCall.TryAsInt64(obj, out var integer))
                plain = PythonValue.FromInt64(integer, "int");
        }
        if (plain is null)
            return ToValue(session, CPython.Own(obj));
        OwnedReference.DecRef(obj);
        return plain;
    }

    /// <summary>Converts a (policy-exported) result, taking ownership of <paramref name="obj"/>.</summary>
    public static PythonValue ToValue(InProcessSession session, PyObject obj)
    {
        Gil.AssertHeld();
        var keep = false;
        try
        {
            if (obj.IsNone())
                return PythonValue.FromNone();
            if (Native.CPython.Address(obj) == Native.CPython.Address(PythonBools.Get(true)) || Native.CPython.Address(obj) == Native.CPython.Address(PythonBools.Get(false)))
                return PythonValue.FromBool(obj.IsTrue());
            if (PyInt.IsIntType(obj))
            {
                if (DirectCall.TryAsInt64(obj, out var integer))
                    return PythonValue.FromInt64(integer, TypeName(obj));
                // beyond 64 bits: stays a Python object
            }
            else if (PyFloat.IsFloatType(obj))
                return PythonValue.FromDouble(DirectCall.AsDouble(obj, "float(result)"), TypeName(obj));
            else if (PyString.IsStringType(obj))
                return PythonValue.FromString(obj.As<string>());
            else if (TypeName(obj) == "bytes")
                return PythonValue.FromBytes(BytesOf(obj));
            else if (IsNumPyArray(obj) && RememberArrayType(obj) && BufferTensorData.TryCreate(obj) is { } data)
            {
                keep = true;
                return PythonValue.FromTensor(data, NumPyArrayType);
            }
            else if (PyTuple.IsTupleType(obj) || PyList.IsListType(obj))
                return PythonValue.FromSequence(ConvertItems(obj.Length(), i => ToValue(session, obj[i]), v => v.Dispose()), TypeName(obj));
            else if (PyDict.IsDictType(obj))
            {
                using var keys = obj.InvokeMethod("keys");
                using var keyList = PyList.AsList(keys);
                return PythonValue.FromMapping(ConvertItems(keyList.Length(), i =>
                {
                    var pyKey = keyList[i];
                    PythonValue key;
                    var pyValue = obj.GetItem(pyKey);
                    try
                    {
                        key = ToValue(session, pyKey);
                    }
                    catch
                    {
                        pyValue.Dispose();
                        throw;
                    }
                    try
                    {
                        return new KeyValuePair<PythonValue, PythonValue>(key, ToValue(session, pyValue));
                    }
                    catch
                    {
                        key.Dispose();
                        throw;
                    }
                }, p => { p.Key.Dispose(); p.Value.Dispose(); }));
            }
            keep = true;
            return PythonValue.FromObject(session.Track(obj));
        }
        finally
        {
            if (!keep)
                obj.Dispose();
        }
    }

    private static unsafe byte[] BytesOf(PyObject bytes)
    {
        using var buffer = PythonBuffer.Acquire(bytes, writable: false);
        // Safety: a bytes object's buffer is ByteLength contiguous bytes, valid until the buffer is released below.
        return new ReadOnlySpan<byte>((void*)buffer.Pointer, checked((int)buffer.ByteLength)).ToArray();
    }

    private static List<T> ConvertItems<T>(long count, Func<int, T> convert, Action<T> dispose)
    {
        var result = new List<T>();
        try
        {
            for (var i = 0; i < count; i++)
                result.Add(convert(i));
            return result;
        }
        catch
        {
            result.ForEach(dispose);
            throw;
        }
    }

    private const string NumPyArrayType = "numpy.ndarray";

    private static bool IsNumPyArray(PyObject obj) => TypeName(obj) == NumPyArrayType;

    private static bool RememberArrayType(PyObject array)
    {
        s_ndarrayType = DirectCall.TypeOf(array); // immutable and never unloaded: the address stays numpy.ndarray's
        return true;
    }

    /// <summary><c>type(obj)</c>'s qualified name (<c>builtins.</c> left out). Requires the GIL.</summary>
    /// <remarks>
    /// Names of immutable types (built-in and extension types such as <c>numpy.ndarray</c>: their names cannot change) are
    /// cached by the type's address; the cache keeps a reference to each such type, so an address is never reused while
    /// cached. Other classes are asked each time (a class's <c>__qualname__</c> may be reassigned).
    /// </remarks>
    public static string TypeName(PyObject obj)
    {
        Gil.AssertHeld();
        var address = DirectCall.TypeOf(obj);
        if (s_typeNames.TryGetValue(address, out var cached))
            return cached;
        using var type = obj.GetPythonType();
        var name = PythonErrors.QualifiedName(type);
        // The dictionary is only touched with the GIL held and between Python calls, so GIL holders never overlap on it.
        if (DirectCall.IsImmutableType(address) && s_typeNames.Count < MaxCachedTypeNames && s_typeNames.TryAdd(address, name))
            s_cachedTypes.Add(Native.CPython.Borrow(address));
        return name;
    }

    private const int MaxCachedTypeNames = 512;
    private static readonly Dictionary<nint, string> s_typeNames = [];
    private static readonly List<PyObject> s_cachedTypes = []; // references that keep the cached types' addresses theirs
}

/// <summary>Tensor data over the Python buffer of an exported NumPy array: zero-copy (the tensor's own storage when it was on the CPU).</summary>
internal sealed class BufferTensorData : TensorData
{
    private readonly PythonBuffer _buffer;
    private IDisposable? _array; // the array's reference: a pythonnet PyObject or a raw OwnedReference

    private BufferTensorData(PythonBuffer buffer, IDisposable array)
        : base(buffer.DType, Widen(buffer.Shape), Widen(buffer.Strides))
    {
        _buffer = buffer;
        _array = array;
    }

    /// <summary>Takes ownership of <paramref name="array"/> on success; null when its dtype is outside the table. Requires the GIL.</summary>
    public static BufferTensorData? TryCreate(PyObject array) => TryCreate(CPython.Address(array), array);

    /// <summary>Takes over the raw reference <paramref name="array"/> on success (null: the caller keeps it). Requires the GIL.</summary>
    public static BufferTensorData? TryCreate(nint array) => TryCreate(array, null);

    // array: the reference to keep, or null to take over the raw reference at address (only on success).
    private static BufferTensorData? TryCreate(nint address, IDisposable? array)
    {
        PythonBuffer buffer;
        try
        {
            buffer = PythonBuffer.Acquire(address, writable: false);
        }
        catch (UnsupportedDTypeException)
        {
            return null;
        }
        if (!buffer.Format.IsNativeOrder)
        {
            buffer.Dispose();
            return null;
        }
        return new BufferTensorData(buffer, array ?? OwnedReference.Take(address));
    }

    private static long[] Widen(nint[] values)
    {
        var result = new long[values.Length];
        for (var i = 0; i < values.Length; i++)
            result[i] = values[i];
        return result;
    }

    protected override nint GetAddress() => _buffer.Pointer;

    protected override void Dispose(bool disposing)
    {
        var array = Interlocked.Exchange(ref _array, null);
        if (disposing && array is not null)
            PendingReleases.Release(_buffer, array); // never waits indefinitely for a GIL another thread holds
        base.Dispose(disposing);
    }
}
