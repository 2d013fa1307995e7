// Design notes: an ndarray's flags read from the array object, as NumPy's own C API does (PyArray_FLAGS is a macro over
// PyArrayObject_fields, whose leading fields NumPy keeps stable across 1.x and 2.x: the object header, data, nd,
// dimensions, strides, base, descr, flags). Used where a flag is checked on every call (TorchTensor.FromNumPy's
// read-only refusal): `arr.flags.writeable` through attributes makes a flags object and two lookups (~50 ns).
// - The offset is trusted only after a probe array showed it (the WRITEABLE bit set, then cleared by
//   `flags.writeable = False`, the other bits unchanged); on any other layout (a free-threaded build's larger object
//   header, a future NumPy) the probe fails and callers keep the attribute path.
// - Only objects of type ndarray or a subclass are read (Py_TYPE via PyObject_Type; PyType_IsSubtype for subclasses).
using Python.Runtime;

namespace Interop.Native;

/// <summary>Reads an ndarray's flags in place (see the design notes).</summary>
internal static unsafe class NumPyArrayFields
{
    private const int FlagsOffset = 64; // PyObject header (16) + data, nd (+ padding), dimensions, strides, base, descr: 8 each
    private const int WriteableFlag = 0x0400; // NPY_ARRAY_WRITEABLE
    private static PyObject? s_ndarray; // numpy.ndarray, kept for the process's life once the probe passed
    private static int s_state; // 0: not probed yet, 1: the offset is trusted, -1: it is not

    /// <summary>
    /// <c>arr.flags.writeable</c> read in place when <paramref name="obj"/> is an ndarray (or a subclass) and the layout
    /// was confirmed; false when the caller must ask through attributes instead. Requires the GIL.
    /// </summary>
    public static bool TryIsWriteable(nint obj, out bool writeable)
    {
        Embedding.Gil.AssertHeld();
        writeable = false;
        if (s_state == 0)
            Probe();
        if (s_state < 0)
            return false;
        var type = DirectCall.TypeOf(obj);
        var ndarray = CPython.Address(s_ndarray!);
        if (type != ndarray && CPython.PyType_IsSubtype(type, ndarray) == 0)
            return false;
        writeable = (*(int*)(obj + FlagsOffset) & WriteableFlag) != 0;
        return true;
    }

    /// <summary>Confirms the offset on a probe array; any failure leaves the attribute path in use.</summary>
    private static void Probe()
    {
        try
        {
            using var numpy = Py.Import("numpy");
            var ndarray = numpy.GetAttr("ndarray");
            using var length = new PyInt(4);
            using var probe = numpy.InvokeMethod("empty", length);
            var address = CPython.Address(probe);
            if (DirectCall.TypeOf(address) != CPython.Address(ndarray))
            {
                ndarray.Dispose();
                s_state = -1;
                return;
            }
            var before = *(int*)(address + FlagsOffset);
            using (var flags = probe.GetAttr("flags"))
                flags.SetAttr("writeable", Embedding.PythonBools.Get(false));
            var after = *(int*)(address + FlagsOffset);
            var trusted = (before & WriteableFlag) != 0 && (after & WriteableFlag) == 0 && (before & ~WriteableFlag) == (after & ~WriteableFlag);
            if (trusted)
                s_ndarray = ndarray;
            else
                ndarray.Dispose();
            s_state = trusted ? 1 : -1;
        }
        catch (PythonException)
        {
            s_state = -1;
        }
    }
}
