using Python.Runtime;

namespace Interop.Embedding;

/// <summary>Python's <c>True</c> and <c>False</c> (pythonnet's <c>PyObject.FromManagedObject(false)</c> is a truthy wrapper, not <c>False</c>).</summary>
internal static class PythonBools
{
    private static PyObject? s_true;
    private static PyObject? s_false;

    /// <summary>The shared <c>True</c>/<c>False</c> object. Requires the GIL. Never dispose the result.</summary>
    public static PyObject Get(bool value)
    {
        Gil.AssertHeld();
        if (s_true is null)
        {
            using var builtins = Py.Import("builtins");
            s_false = builtins.GetAttr("False");
            s_true = builtins.GetAttr("True");
        }
        return value ? s_true : s_false!;
    }
}
