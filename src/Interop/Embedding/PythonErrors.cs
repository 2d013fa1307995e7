// Design notes: the one place where a Python error becomes a .NET exception. Both pythonnet's
// PythonException and a raw C-API failure (an error indicator set after a NULL / -1 return) go through
// Translate, so every PythonErrorException carries the same type name, message and traceback format.
using Interop.Errors;
using Interop.Native;
using Python.Runtime;

namespace Interop.Embedding;

internal static class PythonErrors
{
    /// <summary>Converts pythonnet's exception. Requires the GIL.</summary>
    public static PythonErrorException Translate(PythonException e)
    {
        Gil.AssertHeld();
        return Translate(e.Type, e.Value, e.Traceback, e);
    }

    /// <summary>Fetches the error indicator set by a failed C-API call and converts it. Requires the GIL.</summary>
    public static unsafe PythonErrorException FetchPending(string what)
    {
        Gil.AssertHeld();
        nint type, value, traceback;
        CPython.PyErr_Fetch(&type, &value, &traceback);
        if (type == 0)
            return new PythonErrorException("SystemError", $"{what} failed without setting a Python error", "");
        CPython.PyErr_NormalizeException(&type, &value, &traceback);
        using var t = CPython.Borrow(type);
        using var v = value == 0 ? null : CPython.Borrow(value);
        using var tb = traceback == 0 ? null : CPython.Borrow(traceback);
        // Safety: the three references came from PyErr_Fetch and are ours to release; Borrow took its own.
        CPython.Py_DecRef(type);
        if (value != 0) CPython.Py_DecRef(value);
        if (traceback != 0) CPython.Py_DecRef(traceback);
        return Translate(t, v, tb, new InvalidOperationException(what + " failed"));
    }

    /// <summary>A Python type's module-qualified name (<c>builtins.</c> left out), e.g. <c>numpy.ndarray</c>, <c>ValueError</c>. Requires the GIL.</summary>
    internal static string QualifiedName(PyObject type)
    {
        using var module = type.GetAttr("__module__");
        using var name = type.GetAttr("__qualname__");
        var m = module.ToString();
        return m is null or "builtins" ? name.ToString() ?? "?" : $"{m}.{name}";
    }

    private static PythonErrorException Translate(PyObject type, PyObject? value, PyObject? traceback, Exception inner)
    {
        string typeName;
        try
        {
            typeName = QualifiedName(type);
        }
        catch (PythonException)
        {
            typeName = type.ToString() ?? "?";
        }
        var message = value?.ToString() ?? "";
        string text;
        try
        {
            using var tb = Py.Import("traceback");
            using var lines = tb.InvokeMethod("format_exception", type, value ?? PyObject.None, traceback ?? PyObject.None);
            text = string.Concat(lines.As<string[]>());
        }
        catch (PythonException)
        {
            text = $"{typeName}: {message}";
        }
        return new PythonErrorException(typeName, message, text, inner);
    }
}
