// Design notes: the one unsafe boundary to libpython. Every CPython C-API entry point the library
// calls directly is resolved here, once, from the libpython that pythonnet loaded (NativeLibrary.Load
// of the same path returns the same handle, so symbols come from the library actually in the process).
// Calls go through unmanaged function pointers: no marshalling, no delegates to keep alive.
// Threading: every function except the PyGILState_* family requires the caller to hold the GIL.
// Sources: https://github.com/python/cpython/tree/main/Include (abstract.h, pybuffer.h, pystate.h, ceval.h).
using System.Runtime.InteropServices;

namespace Interop.Native;

internal static unsafe class CPython
{
    private static nint s_library;

    public static delegate* unmanaged<nint, PyBuffer*, int, int> PyObject_GetBuffer;
    public static delegate* unmanaged<PyBuffer*, void> PyBuffer_Release;
    public static delegate* unmanaged<int> PyGILState_Ensure;
    public static delegate* unmanaged<int, void> PyGILState_Release;
    public static delegate* unmanaged[SuppressGCTransition]<int> PyGILState_Check; // reads thread-local state only (Embedding/Gil.cs)
    // PyThreadState *PyThreadState_GetUnchecked(void) (3.13+; _PyThreadState_UncheckedGet before, pystate.h): the current
    // thread state, NULL when none; never fails, needs no GIL, only reads (3.12+: this thread's; up to 3.11: the GIL holder's).
    public static delegate* unmanaged[SuppressGCTransition]<nint> PyThreadState_GetUnchecked;
    // PyThreadState *PyGILState_GetThisThreadState(void): this thread's state from the gilstate TLS key, NULL when none; no GIL.
    public static delegate* unmanaged[SuppressGCTransition]<nint> PyGILState_GetThisThreadState;
    public static delegate* unmanaged<nint> PyEval_SaveThread;
    public static delegate* unmanaged<nint, void> PyEval_RestoreThread;
    public static delegate* unmanaged<nint> PyErr_Occurred;
    public static delegate* unmanaged<nint, void> Py_IncRef;
    public static delegate* unmanaged<nint, void> Py_DecRef;
    public static delegate* unmanaged<nint, byte*, delegate* unmanaged<nint, void>, nint> PyCapsule_New;
    public static delegate* unmanaged<nint, byte*, nint> PyCapsule_GetPointer;
    public static delegate* unmanaged<nint*, nint*, nint*, void> PyErr_Fetch;
    public static delegate* unmanaged<nint*, nint*, nint*, void> PyErr_NormalizeException;
    // int PyThreadState_SetAsyncExc(unsigned long id, PyObject *exc) (pystate.h); exc NULL clears a pending one. unsigned long is 64-bit on LP64.
    public static delegate* unmanaged<nuint, nint, int> PyThreadState_SetAsyncExc;
    // unsigned long PyThread_get_thread_ident(void) (pythread.h): the id threading.get_ident() reports.
    public static delegate* unmanaged<nuint> PyThread_get_thread_ident;

    // The direct call path (DirectCall.cs): PyObject *PyObject_Vectorcall(PyObject *callable, PyObject *const *args,
    // size_t nargsf, PyObject *kwnames) (abstract.h, exported since 3.9); the others from object.h, longobject.h,
    // floatobject.h, tupleobject.h.
    public static delegate* unmanaged<nint, nint*, nuint, nint, nint> PyObject_Vectorcall;
    public static delegate* unmanaged<nint, nint, nint> PyObject_GetAttr;
    public static delegate* unmanaged<nint, int> PyObject_IsTrue;
    public static delegate* unmanaged<nint, nint> PyObject_Type;
    public static delegate* unmanaged<long, nint> PyLong_FromLongLong;
    public static delegate* unmanaged<nint, long> PyLong_AsLongLong;
    public static delegate* unmanaged<nint, double> PyFloat_AsDouble;
    public static delegate* unmanaged<nint, nint> PyTuple_New;
    public static delegate* unmanaged<nint, nint, nint, int> PyTuple_SetItem;
    public static delegate* unmanaged<nint, nint> PyList_New;
    public static delegate* unmanaged<nint, nint, nint, int> PyList_SetItem;
    public static delegate* unmanaged<double, nint> PyFloat_FromDouble;
    public static delegate* unmanaged<void> PyErr_Clear;
    public static delegate* unmanaged<nint, ulong> PyType_GetFlags; // unsigned long PyType_GetFlags(PyTypeObject*)
    public static delegate* unmanaged<nint, nint, int> PySet_Contains; // int PySet_Contains(PyObject *anyset, PyObject *key)
    public static delegate* unmanaged[SuppressGCTransition]<nint, nint, int> PyType_IsSubtype; // int PyType_IsSubtype(PyTypeObject *a, PyTypeObject *b): reads the MRO only
    public static delegate* unmanaged<nint, int> PyErr_ExceptionMatches; // int PyErr_ExceptionMatches(PyObject *exc)

    public static bool IsLoaded => s_library != 0;

    /// <summary>Resolves every entry point from <paramref name="libraryPath"/>; called once by the runtime.</summary>
    public static void Load(string libraryPath)
    {
        if (s_library != 0)
            return;
        var lib = NativeLibrary.Load(libraryPath);
        PyObject_GetBuffer = (delegate* unmanaged<nint, PyBuffer*, int, int>)Resolve(lib, "PyObject_GetBuffer");
        PyBuffer_Release = (delegate* unmanaged<PyBuffer*, void>)Resolve(lib, "PyBuffer_Release");
        PyGILState_Ensure = (delegate* unmanaged<int>)Resolve(lib, "PyGILState_Ensure");
        PyGILState_Release = (delegate* unmanaged<int, void>)Resolve(lib, "PyGILState_Release");
        PyGILState_Check = (delegate* unmanaged[SuppressGCTransition]<int>)Resolve(lib, "PyGILState_Check");
        PyThreadState_GetUnchecked = (delegate* unmanaged[SuppressGCTransition]<nint>)(NativeLibrary.TryGetExport(lib, "PyThreadState_GetUnchecked", out var current)
            ? current : Resolve(lib, "_PyThreadState_UncheckedGet"));
        PyGILState_GetThisThreadState = (delegate* unmanaged[SuppressGCTransition]<nint>)Resolve(lib, "PyGILState_GetThisThreadState");
        PyEval_SaveThread = (delegate* unmanaged<nint>)Resolve(lib, "PyEval_SaveThread");
        PyEval_RestoreThread = (delegate* unmanaged<nint, void>)Resolve(lib, "PyEval_RestoreThread");
        PyErr_Occurred = (delegate* unmanaged<nint>)Resolve(lib, "PyErr_Occurred");
        Py_IncRef = (delegate* unmanaged<nint, void>)Resolve(lib, "Py_IncRef");
        Py_DecRef = (delegate* unmanaged<nint, void>)Resolve(lib, "Py_DecRef");
        PyCapsule_New = (delegate* unmanaged<nint, byte*, delegate* unmanaged<nint, void>, nint>)Resolve(lib, "PyCapsule_New");
        PyCapsule_GetPointer = (delegate* unmanaged<nint, byte*, nint>)Resolve(lib, "PyCapsule_GetPointer");
        PyErr_Fetch = (delegate* unmanaged<nint*, nint*, nint*, void>)Resolve(lib, "PyErr_Fetch");
        PyErr_NormalizeException = (delegate* unmanaged<nint*, nint*, nint*, void>)Resolve(lib, "PyErr_NormalizeException");
        PyThreadState_SetAsyncExc = (delegate* unmanaged<nuint, nint, int>)Resolve(lib, "PyThreadState_SetAsyncExc");
        PyThread_get_thread_ident = (delegate* unmanaged<nuint>)Resolve(lib, "PyThread_get_thread_ident");
        PyObject_Vectorcall = (delegate* unmanaged<nint, nint*, nuint, nint, nint>)Resolve(lib, "PyObject_Vectorcall");
        PyObject_GetAttr = (delegate* unmanaged<nint, nint, nint>)Resolve(lib, "PyObject_GetAttr");
        PyObject_IsTrue = (delegate* unmanaged<nint, int>)Resolve(lib, "PyObject_IsTrue");
        PyObject_Type = (delegate* unmanaged<nint, nint>)Resolve(lib, "PyObject_Type");
        PyLong_FromLongLong = (delegate* unmanaged<long, nint>)Resolve(lib, "PyLong_FromLongLong");
        PyLong_AsLongLong = (delegate* unmanaged<nint, long>)Resolve(lib, "PyLong_AsLongLong");
        PyFloat_AsDouble = (delegate* unmanaged<nint, double>)Resolve(lib, "PyFloat_AsDouble");
        PyTuple_New = (delegate* unmanaged<nint, nint>)Resolve(lib, "PyTuple_New");
        PyTuple_SetItem = (delegate* unmanaged<nint, nint, nint, int>)Resolve(lib, "PyTuple_SetItem");
        PyList_New = (delegate* unmanaged<nint, nint>)Resolve(lib, "PyList_New");
        PyList_SetItem = (delegate* unmanaged<nint, nint, nint, int>)Resolve(lib, "PyList_SetItem");
        PyFloat_FromDouble = (delegate* unmanaged<double, nint>)Resolve(lib, "PyFloat_FromDouble");
        PyErr_Clear = (delegate* unmanaged<void>)Resolve(lib, "PyErr_Clear");
        PyType_GetFlags = (delegate* unmanaged<nint, ulong>)Resolve(lib, "PyType_GetFlags");
        PySet_Contains = (delegate* unmanaged<nint, nint, int>)Resolve(lib, "PySet_Contains");
        PyType_IsSubtype = (delegate* unmanaged[SuppressGCTransition]<nint, nint, int>)Resolve(lib, "PyType_IsSubtype");
        PyErr_ExceptionMatches = (delegate* unmanaged<nint, int>)Resolve(lib, "PyErr_ExceptionMatches");
        s_library = lib;
    }

    /// <summary>A new pythonnet <see cref="Python.Runtime.PyObject"/> for a borrowed pointer (increments its count). Requires the GIL.</summary>
    public static Python.Runtime.PyObject Borrow(nint pointer)
    {
        Py_IncRef(pointer);
        return Own(pointer);
    }

    /// <summary>A pythonnet <see cref="Python.Runtime.PyObject"/> that takes over the new reference <paramref name="pointer"/> (not null). Requires the GIL.</summary>
    /// <remarks>
    /// pythonnet 3.2 has no public constructor from a raw pointer. Its internal <c>PyObject(IntPtr)</c> (which takes over the
    /// reference) is bound once through a compiled expression, after checking on a fresh object that it neither adds nor
    /// drops a reference; if that constructor is missing or behaves otherwise, ctypes makes the object (a few µs).
    /// </remarks>
    public static Python.Runtime.PyObject Own(nint pointer) => (s_own ??= BindOwn())(pointer);

    private static Func<nint, Python.Runtime.PyObject>? s_own;
    private static Python.Runtime.PyObject? s_objectAt;

    private static Func<nint, Python.Runtime.PyObject> BindOwn()
    {
        var ctor = typeof(Python.Runtime.PyObject).GetConstructor(
            System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic, [typeof(nint)]);
        if (ctor is not null)
        {
            try
            {
                var p = System.Linq.Expressions.Expression.Parameter(typeof(nint));
                var own = System.Linq.Expressions.Expression.Lambda<Func<nint, Python.Runtime.PyObject>>(System.Linq.Expressions.Expression.New(ctor, p), p).Compile();
                // A fresh int (refcount 1, not cached by CPython) must come out with a count of 1: taken over, not added to.
                var probe = PyLong_FromLongLong(0x3141_5926_5358_9793);
                if (probe != 0)
                {
                    using var wrapped = own(probe);
                    if (wrapped.Refcount == 1)
                        return own;
                }
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or MemberAccessException)
            {
                // fall through to ctypes
            }
        }
        return pointer =>
        {
            s_objectAt ??= Python.Runtime.PythonEngine.Eval("lambda a: __import__('ctypes').cast(a, __import__('ctypes').py_object).value");
            using var address = new Python.Runtime.PyInt(pointer);
            var result = s_objectAt.Invoke(address);
            Py_DecRef(pointer); // result holds its own reference now
            return result;
        };
    }

    /// <summary>The <c>PyObject*</c> behind a pythonnet object (borrowed: valid while <paramref name="obj"/> is alive).</summary>
    /// <exception cref="ObjectDisposedException"><paramref name="obj"/> was disposed (its handle is null; CPython would crash on it).</exception>
#pragma warning disable CS0612, CS0618 // pythonnet marks Handle obsolete in favour of internal reference types
    public static nint Address(Python.Runtime.PyObject obj)
    {
        var handle = obj.Handle;
        return handle != 0 ? handle : throw new ObjectDisposedException(nameof(Python.Runtime.PyObject), "The Python object was disposed.");
    }
#pragma warning restore CS0612, CS0618

    private static nint Resolve(nint lib, string name) =>
        NativeLibrary.TryGetExport(lib, name, out var address)
            ? address
            : throw new EntryPointNotFoundException($"libpython does not export {name}; is it a CPython 3.10+ shared library?");
}
