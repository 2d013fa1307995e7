using Interop.Embedding;
using Python.Runtime;

namespace Interop.NumPy;

/// <summary>Imports NumPy in the embedded interpreter, with a typed error when it is missing.</summary>
internal static class NumPyModule
{
    /// <summary>Returns the <c>numpy</c> module. Requires the GIL.</summary>
    public static PyObject Import()
    {
        Gil.AssertHeld();
        PythonRuntime.RequirePackage("numpy");
        return Py.Import("numpy");
    }
}
