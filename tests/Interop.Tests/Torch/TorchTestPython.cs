using Interop.Embedding;
using Interop.Torch;
using Python.Runtime;

namespace Interop.Tests.Torch;

/// <summary>Evaluates Python with <c>torch</c>, <c>np</c> and named objects in scope; the tests' oracle.</summary>
internal static class TorchTestPython
{
    public static int TorchMajor => int.Parse(TestPython.Installation.TorchVersion!.Split('.')[0], System.Globalization.CultureInfo.InvariantCulture);

    public static T Eval<T>(string expression, params (string Name, PyObject Value)[] names) => PythonRuntime.Run(() =>
    {
        using var scope = Scope(names);
        using var result = scope.Eval(expression);
        return result.As<T>();
    });

    public static void Exec(string code, params (string Name, PyObject Value)[] names) => PythonRuntime.Run(() =>
    {
        using var scope = Scope(names);
        scope.Exec(code);
        return 0;
    });

    private static PyModule Scope((string Name, PyObject Value)[] names)
    {
        var scope = Py.CreateScope();
        using (var torch = TorchTensor.Import())
            scope.Set("torch", torch);
        scope.Exec("import numpy as np, gc, __main__");
        foreach (var (name, value) in names)
            scope.Set(name, value);
        return scope;
    }
}
