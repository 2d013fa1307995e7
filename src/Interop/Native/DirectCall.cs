// Design notes: the direct call path to CPython for the library's hot paths (TorchTensor's conversions, the
// in-process session's calls). pythonnet's dynamic invocation builds an argument tuple (and a dict for keywords),
// wraps every intermediate object in a finalizable PyObject and checks errors through its own exception type; these
// helpers call PyObject_Vectorcall with the arguments on the stack and wrap only the result.
// - Every method requires the GIL (callers hold a Gil token) and returns a NEW pythonnet PyObject the caller owns,
//   or throws PythonErrorException (PythonErrors.FetchPending: the same type name, message and traceback as
//   pythonnet's path) when CPython reports an error.
// - Arguments are pythonnet objects: their addresses are read with CPython.Address, which throws
//   ObjectDisposedException for a disposed object before CPython could see a null pointer. They stay alive for the
//   call because the caller holds them (a borrowed reference for the duration of the call, as the C API allows).
// Source: https://docs.python.org/3/c-api/call.html#c.PyObject_Vectorcall
using Interop.Embedding;
using PyObject = Python.Runtime.PyObject;

namespace Interop.Native;

internal static unsafe class DirectCall
{
    /// <summary><c>callable(arg)</c>.</summary>
    public static PyObject Call(PyObject callable, PyObject arg, string what) =>
        CPython.Own(CallRaw(CPython.Address(callable), CPython.Address(arg), what));

    /// <summary><c>callable(arg)</c> on raw pointers (borrowed, alive for the call); returns a new reference, never null.</summary>
    public static nint CallRaw(nint callable, nint arg, string what)
    {
        Gil.AssertHeld();
        var args = stackalloc nint[1];
        args[0] = arg;
        return Check(CPython.PyObject_Vectorcall(callable, args, 1, 0), what);
    }

    /// <summary>
    /// <c>callable(*positional, **dict(zip(keywordNames, keywordValues)))</c> on raw pointers (borrowed, alive for the call):
    /// <paramref name="arguments"/> holds the <paramref name="positional"/> positional values followed by the keyword values
    /// named by <paramref name="keywordNames"/> (a tuple of str, 0 for none). Returns a new reference, never null.
    /// </summary>
    public static nint CallRaw(nint callable, ReadOnlySpan<nint> arguments, int positional, nint keywordNames, string what)
    {
        Gil.AssertHeld();
        fixed (nint* args = arguments)
            return Check(CPython.PyObject_Vectorcall(callable, args, (nuint)positional, keywordNames), what);
    }

    /// <summary><c>getattr(obj, name)</c> (<paramref name="name"/> a str).</summary>
    public static PyObject GetAttr(PyObject obj, PyObject name, string what)
    {
        Gil.AssertHeld();
        return Result(CPython.PyObject_GetAttr(CPython.Address(obj), CPython.Address(name)), what);
    }

    /// <summary><c>bool(getattr(getattr(obj, first), second))</c> without wrapping the intermediate objects (<paramref name="obj"/> borrowed).</summary>
    public static bool AttributeIsTrue(nint obj, PyObject first, PyObject second, string what)
    {
        Gil.AssertHeld();
        var outer = CPython.PyObject_GetAttr(obj, CPython.Address(first));
        if (outer == 0)
            throw PythonErrors.FetchPending(what);
        var inner = CPython.PyObject_GetAttr(outer, CPython.Address(second));
        CPython.Py_DecRef(outer);
        if (inner == 0)
            throw PythonErrors.FetchPending(what);
        var truth = CPython.PyObject_IsTrue(inner);
        CPython.Py_DecRef(inner);
        return truth >= 0 ? truth != 0 : throw PythonErrors.FetchPending(what);
    }

    /// <summary>The address of <c>type(obj)</c>, borrowed: valid while <paramref name="obj"/> is alive.</summary>
    public static nint TypeOf(PyObject obj) => TypeOf(CPython.Address(obj));

    /// <summary>The address of <c>type(obj)</c> (<paramref name="obj"/> a live object), borrowed: valid while it is alive.</summary>
    /// <remarks>
    /// Read in place (CPython's Py_TYPE: ob_type follows the 8-byte reference count in the object header of every build
    /// pythonnet runs on) once two calls through PyObject_Type agreed with that slot; a build whose header differs (free
    /// threading) keeps the two calls (~25 ns).
    /// </remarks>
    public static nint TypeOf(nint obj)
    {
        Gil.AssertHeld();
        if (s_typeSlotAgreed >= 2)
            return *(nint*)(obj + TypeSlotOffset);
        var type = CPython.PyObject_Type(obj);
        CPython.Py_DecRef(type); // obj holds its type: the address stays valid while obj lives
        if (s_typeSlotAgreed >= 0)
            s_typeSlotAgreed = *(nint*)(obj + TypeSlotOffset) == type ? s_typeSlotAgreed + 1 : -1;
        return type;
    }

    private const int TypeSlotOffset = 8;
    private static int s_typeSlotAgreed; // calls whose ob_type slot matched PyObject_Type (GIL-guarded); -1: never read it

    /// <summary>True when the type at <paramref name="type"/> is immutable (Py_TPFLAGS_IMMUTABLETYPE: static and extension types).</summary>
    public static bool IsImmutableType(nint type)
    {
        Gil.AssertHeld();
        const ulong ImmutableType = 1UL << 8; // Py_TPFLAGS_IMMUTABLETYPE (object.h, 3.10+)
        return (CPython.PyType_GetFlags(type) & ImmutableType) != 0;
    }

    /// <summary>A new tuple of Python ints.</summary>
    public static PyObject IntTuple(ReadOnlySpan<long> values, string what) => CPython.Own(IntTupleRaw(values, what));

    /// <summary>A new tuple of Python ints, as a new reference (never null).</summary>
    public static nint IntTupleRaw(ReadOnlySpan<long> values, string what)
    {
        Gil.AssertHeld();
        var tuple = CPython.PyTuple_New(values.Length);
        if (tuple == 0)
            throw PythonErrors.FetchPending(what);
        for (var i = 0; i < values.Length; i++)
        {
            var item = CPython.PyLong_FromLongLong(values[i]);
            // PyTuple_SetItem steals item (also when it fails); a NULL item leaves the slot empty for the decref below.
            if (item == 0 || CPython.PyTuple_SetItem(tuple, i, item) != 0)
            {
                var error = PythonErrors.FetchPending(what);
                CPython.Py_DecRef(tuple);
                throw error;
            }
        }
        return tuple;
    }

    /// <summary>A new Python int, as a new reference (never null).</summary>
    public static nint Int64(long value, string what)
    {
        Gil.AssertHeld();
        return Check(CPython.PyLong_FromLongLong(value), what);
    }

    /// <summary>A new Python float, as a new reference (never null).</summary>
    public static nint Double(double value, string what)
    {
        Gil.AssertHeld();
        return Check(CPython.PyFloat_FromDouble(value), what);
    }

    /// <summary>A new tuple of <paramref name="items"/> (borrowed; the tuple takes references of its own), as a new reference.</summary>
    public static nint TupleRaw(ReadOnlySpan<nint> items, string what)
    {
        Gil.AssertHeld();
        var tuple = Check(CPython.PyTuple_New(items.Length), what);
        for (var i = 0; i < items.Length; i++)
        {
            CPython.Py_IncRef(items[i]);
            _ = CPython.PyTuple_SetItem(tuple, i, items[i]); // steals the reference just taken; cannot fail on a fresh tuple of this size
        }
        return tuple;
    }

    /// <summary>A new list of <paramref name="items"/> (borrowed; the list takes references of its own), as a new reference.</summary>
    public static nint ListRaw(ReadOnlySpan<nint> items, string what)
    {
        Gil.AssertHeld();
        var list = Check(CPython.PyList_New(items.Length), what);
        for (var i = 0; i < items.Length; i++)
        {
            CPython.Py_IncRef(items[i]);
            _ = CPython.PyList_SetItem(list, i, items[i]); // steals the reference just taken; cannot fail on a fresh list of this size
        }
        return list;
    }

    /// <summary><c>float(obj)</c> of a Python float (or int); throws on failure.</summary>
    public static double AsDouble(PyObject obj, string what) => AsDouble(CPython.Address(obj), what);

    /// <summary><c>float(obj)</c> of a Python float (or int) at <paramref name="obj"/>; throws on failure.</summary>
    public static double AsDouble(nint obj, string what)
    {
        Gil.AssertHeld();
        var value = CPython.PyFloat_AsDouble(obj);
        return value == -1.0 && CPython.PyErr_Occurred() != 0 ? throw PythonErrors.FetchPending(what) : value;
    }

    /// <summary>A Python int as a long; false (and no error left set) when it does not fit in 64 bits.</summary>
    public static bool TryAsInt64(PyObject obj, out long value) => TryAsInt64(CPython.Address(obj), out value);

    /// <summary>The Python int at <paramref name="obj"/> as a long; false (and no error left set) when it does not fit in 64 bits.</summary>
    public static bool TryAsInt64(nint obj, out long value)
    {
        Gil.AssertHeld();
        value = CPython.PyLong_AsLongLong(obj);
        if (value != -1 || CPython.PyErr_Occurred() == 0)
            return true;
        CPython.PyErr_Clear();
        return false;
    }

    /// <summary>
    /// <c>callable(arg)</c> when it succeeds; 0 when it raised an exception of <paramref name="expected"/> (a class or a tuple of
    /// classes; the error is cleared); any other exception is thrown as <see cref="Errors.PythonErrorException"/>.
    /// </summary>
    public static nint TryCallRaw(nint callable, nint arg, nint expected, string what)
    {
        Gil.AssertHeld();
        var args = stackalloc nint[1];
        args[0] = arg;
        var result = CPython.PyObject_Vectorcall(callable, args, 1, 0);
        if (result != 0)
            return result;
        if (CPython.PyErr_ExceptionMatches(expected) == 0)
            throw PythonErrors.FetchPending(what);
        CPython.PyErr_Clear();
        return 0;
    }

    /// <summary><c>getattr(obj, name) in collection</c> for a set or frozenset <paramref name="collection"/> (<paramref name="obj"/> borrowed).</summary>
    public static bool AttributeIn(nint obj, PyObject name, PyObject collection, string what)
    {
        Gil.AssertHeld();
        var value = CPython.PyObject_GetAttr(obj, CPython.Address(name));
        if (value == 0)
            throw PythonErrors.FetchPending(what);
        var found = CPython.PySet_Contains(CPython.Address(collection), value);
        CPython.Py_DecRef(value);
        return found >= 0 ? found != 0 : throw PythonErrors.FetchPending(what);
    }

    private static nint Check(nint result, string what) => result != 0 ? result : throw PythonErrors.FetchPending(what);

    private static PyObject Result(nint result, string what) => CPython.Own(Check(result, what));
}
