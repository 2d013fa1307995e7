// Design notes: Python warnings raised inside Interop's library calls, delivered to .NET callers.
// - Python's warnings go to Python's stderr, which a .NET application rarely reads; and PyTorch reports some problems
//   only as a warning (once per process). Library calls that run Python code open a Capture scope on their thread;
//   python/interop_helpers/warnings_bridge.py wraps warnings.showwarning once and offers each warning Python decides to
//   show to Deliver, which raises Raised when the warning came from a thread inside a scope and someone listens.
//   Otherwise (no scope: Python threads, user code outside library calls; or no handler) Python prints it as before.
// - The scope is a [ThreadStatic] depth (zero cost per call): Python code runs on the calling .NET thread, so the
//   thread that shows the warning is the one that opened the scope. The scope is a ref struct: it cannot cross an await.
// - Handlers run synchronously on the calling thread while it holds the GIL, before the library call returns; an
//   exception from a handler is reported on stderr and never reaches the Python code that warned.
using Interop.Embedding;
using Python.Runtime;

namespace Interop.Diagnostics;

/// <summary>A Python warning raised during a library call (see <see cref="PythonWarnings.Raised"/>).</summary>
public sealed class PythonWarningEventArgs : EventArgs
{
    internal PythonWarningEventArgs(string category, string message, string fileName, int lineNumber, string operation)
    {
        Category = category;
        Message = message;
        FileName = fileName;
        LineNumber = lineNumber;
        Operation = operation;
    }

    /// <summary>The warning's class: <c>UserWarning</c>, <c>RuntimeWarning</c>, <c>DeprecationWarning</c>, or a qualified name for others.</summary>
    public string Category { get; }

    /// <summary>The warning's text.</summary>
    public string Message { get; }

    /// <summary>The Python file the warning is attributed to (<c>&lt;string&gt;</c> for evaluated code).</summary>
    public string FileName { get; }

    /// <summary>The line in <see cref="FileName"/>.</summary>
    public int LineNumber { get; }

    /// <summary>The library call during which Python warned, e.g. <c>torch.from_numpy</c>.</summary>
    public string Operation { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Category}: {Message} ({FileName}:{LineNumber}, during {Operation})";
}

/// <summary>
/// The channel for Python warnings raised inside Interop's library calls (<c>TorchTensor</c> conversions and the export
/// policy, <c>Evaluate</c>): subscribe to <see cref="Raised"/> to receive them instead of Python printing them on its
/// stderr. Python's warning filters still decide which warnings are shown (by default each once per code location).
/// </summary>
public static class PythonWarnings
{
    [ThreadStatic] private static int t_depth;
    [ThreadStatic] private static string? t_operation;
    private static PyObject? s_sink; // the .NET callable handed to Python; kept for the interpreter's lifetime

    /// <summary>
    /// Raised for each Python warning shown while a library call runs, on the calling thread, with the GIL held, before
    /// the call returns. While no handler is attached, Python prints warnings as usual. Handlers must not block; an
    /// exception thrown by a handler is written to stderr and otherwise ignored.
    /// </summary>
    public static event EventHandler<PythonWarningEventArgs>? Raised;

    /// <summary>Marks this thread as inside <paramref name="operation"/> until disposed. Requires the GIL.</summary>
    internal static Scope Capture(string operation)
    {
        Gil.AssertHeld();
        Install();
        var previous = t_operation;
        t_depth++;
        t_operation = operation;
        return new Scope(previous);
    }

    /// <summary>The scope of one library call (see <see cref="Capture"/>).</summary>
    internal readonly ref struct Scope(string? previous)
    {
        public void Dispose()
        {
            t_depth--;
            t_operation = previous;
        }
    }

    private static void Install()
    {
        if (s_sink is not null)
            return;
        Func<string, string, string, long, bool> sink = Deliver;
        var callable = sink.ToPython();
        try
        {
            using var bridge = Py.Import(PythonRuntime.HelperPackage + ".warnings_bridge");
            using var _ = bridge.InvokeMethod("install", callable);
        }
        catch
        {
            callable.Dispose();
            throw;
        }
        s_sink = callable;
    }

    // Called by Python (with the GIL) for every warning it shows, on the thread that warned.
    private static bool Deliver(string category, string message, string fileName, long lineNumber)
    {
        if (t_depth == 0 || Raised is not { } handlers)
            return false;
        var args = new PythonWarningEventArgs(category, message, fileName, (int)Math.Clamp(lineNumber, 0, int.MaxValue), t_operation ?? "?");
        foreach (var handler in handlers.GetInvocationList().Cast<EventHandler<PythonWarningEventArgs>>())
        {
            try
            {
                handler(null, args);
            }
#pragma warning disable CA1031 // a handler's exception must not turn a warning into a Python error
            catch (Exception e)
#pragma warning restore CA1031
            {
                Console.Error.WriteLine($"[interop] a PythonWarnings.Raised handler failed: {e}");
            }
        }
        return true;
    }
}
