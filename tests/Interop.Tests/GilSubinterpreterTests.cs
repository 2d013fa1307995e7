using System.Runtime.InteropServices;
using Interop.Embedding;

namespace Interop.Tests;

/// <summary>
/// Once any subinterpreter has been created, CPython switches PyGILState_Check off for the rest of the process: it answers
/// 1 on every thread, held or not. A scope taken inside a .NET call from Python (pythonnet releases the GIL around it),
/// inside an outer scope of ours, must still take the GIL then. Runs in a child process (the CLI's exec), since the
/// switch cannot be undone and would change every later GIL check of this process.
/// </summary>
[TestFixture]
[Category("embedding")]
public class GilSubinterpreterTests
{
    [Test]
    public void A_scope_inside_a_dotnet_call_from_Python_holds_the_GIL_after_a_subinterpreter_was_created()
    {
        // The CLI's exec runs the source inside a scope of ours; GilProbe.HeldInsideAScope is a .NET call from Python, the
        // first of this exec (a scope that ended in an earlier call would have reset the outer scope's depth, hiding the fault).
        var source =
            "import clr, importlib\n" +
            $"from System.Reflection import Assembly\nAssembly.LoadFrom(r'{typeof(GilProbe).Assembly.Location}')\n" +
            "from Interop.Tests import GilProbe\n" +
            "si = None\n" +
            "for name in ('_interpreters', '_xxsubinterpreters'):\n" +
            "    try:\n        si = importlib.import_module(name); break\n    except ImportError:\n        pass\n" +
            "if si is None:\n    print('no-subinterpreters', flush=True)\n" +
            "else:\n    si.destroy(si.create())\n    print('after', GilProbe.HeldInsideAScope(), GilProbe.HeldInsideAScope(), GilProbe.IsHeldReported(), flush=True)\n";
        var (code, output, timedOut) = TestPython.Run("dotnet", new[] { TestPython.CliDll, "exec", source }, TimeSpan.FromSeconds(60),
                                                      new Dictionary<string, string> { ["INTEROP_PYTHON"] = TestPython.Executable });
        if (output.Contains("no-subinterpreters", StringComparison.Ordinal))
            Assert.Ignore("this Python has no subinterpreter module");
        Assert.Multiple(() =>
        {
            Assert.That(timedOut, Is.False, output);
            Assert.That(code, Is.Zero, output);
            Assert.That(output, Does.Contain("after True True False"),
                "the scope must hold the GIL though PyGILState_Check no longer tells, and Gil.IsHeld must say false where pythonnet released it: " + output);
        });
    }
}

/// <summary>Called from Python in the child process of <see cref="GilSubinterpreterTests"/>.</summary>
public static class GilProbe
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate nint StateFunction();

    private static StateFunction? s_current, s_thisThread;

    /// <summary>Gil.IsHeld, asked inside a .NET call from Python (pythonnet released the GIL around it: false).</summary>
    public static bool IsHeldReported() => Gil.IsHeld;

    /// <summary>Takes a scope and says whether this thread really holds the GIL inside it (its state is the current one).</summary>
    public static bool HeldInsideAScope()
    {
        if (s_current is null)
        {
            var lib = NativeLibrary.Load(PythonRuntime.Installation.LibraryPath!);
            var current = NativeLibrary.TryGetExport(lib, "PyThreadState_GetUnchecked", out var p) ? p : NativeLibrary.GetExport(lib, "_PyThreadState_UncheckedGet");
            s_current = Marshal.GetDelegateForFunctionPointer<StateFunction>(current);
            s_thisThread = Marshal.GetDelegateForFunctionPointer<StateFunction>(NativeLibrary.GetExport(lib, "PyGILState_GetThisThreadState"));
        }
        using (PythonRuntime.AcquireGil())
        {
            var state = s_current();
            return state != 0 && state == s_thisThread!();
        }
    }
}
