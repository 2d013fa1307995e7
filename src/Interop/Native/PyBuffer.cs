// Design notes: a blittable mirror of CPython's Py_buffer and the PyBUF_* request flags.
// pythonnet 3.2.1's own Py_buffer marshals `format` as a managed string and frees CPython's pointer
// (pythonnet issue 2371): this struct keeps every pointer an unmanaged pointer so nothing is freed here.
// Source: https://github.com/python/cpython/blob/main/Include/pybuffer.h
using System.Runtime.InteropServices;

namespace Interop.Native;

/// <summary>CPython's <c>Py_buffer</c>, field for field; filled by <c>PyObject_GetBuffer</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct PyBuffer
{
    public void* Buf;           // void *buf
    public nint Obj;            // PyObject *obj (a new reference, released by PyBuffer_Release)
    public nint Len;            // Py_ssize_t len: bytes covered by the view (product of shape × itemsize)
    public nint ItemSize;       // Py_ssize_t itemsize
    public int ReadOnly;        // int readonly
    public int NDim;            // int ndim
    public byte* Format;        // char *format: NUL-terminated struct-module syntax, NULL means "B"
    public nint* Shape;         // Py_ssize_t *shape
    public nint* Strides;       // Py_ssize_t *strides (bytes)
    public nint* SubOffsets;    // Py_ssize_t *suboffsets (PIL-style indirect arrays)
    public void* Internal;      // void *internal
}

/// <summary>The PyBUF_* request flags (<c>Include/pybuffer.h</c>).</summary>
[Flags]
internal enum PyBufferFlags
{
    Simple = 0,
    Writable = 0x0001,
    Format = 0x0004,
    ND = 0x0008,
    Strides = 0x0010 | ND,
    Indirect = 0x0100 | Strides,
    /// <summary>Everything, accepting indirect buffers so that we can refuse them with our own message.</summary>
    FullReadOnly = Indirect | Format,
    Full = FullReadOnly | Writable,
}
