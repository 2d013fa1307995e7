// Design notes: a session is where Python objects live. The API is shaped so that it can be implemented in
// this process (pythonnet, InProcess) and over a worker process (objects stay in the worker, PythonRef is a
// handle id, arguments and tensor results are copied across). So nothing in this API hands out pythonnet
// types: arguments are .NET values (or TensorArgument / PythonRef), results are PythonValue.
namespace Interop.Sessions;

/// <summary>
/// A place where Python code runs and Python objects live: import modules, load files, call functions and
/// <c>torch.nn.Module</c>s with .NET values, get .NET values back. Dispose it to release everything it handed out.
/// </summary>
/// <example>
/// <code>
/// using var session = PythonSession.InProcess();
/// using var module = session.LoadFile("python/interop_examples/tiny_net.py");
/// using var net = module.GetAttr("build").Call().AsRef();
/// using var y = net.Call([new float[,] { { 1, 2, 3, 4 } }], new CallOptions { GradMode = GradMode.InferenceMode });
/// float[] values = y.ToArray&lt;float&gt;();
/// </code>
/// </example>
public abstract class PythonSession : IDisposable
{
    /// <summary>For implementations.</summary>
    protected PythonSession() { }

    /// <summary>
    /// A session in the embedded interpreter of this process (starting it if needed). Objects are shared with other
    /// in-process users; disposing the session releases only the references it handed out.
    /// The process must not load TorchSharp if Python code imports <c>torch</c> (one libtorch per process).
    /// </summary>
    public static PythonSession InProcess() => new InProcessSession();

    /// <summary>A short description (e.g. <c>in-process Python 3.11</c>).</summary>
    public abstract string Description { get; }

    /// <summary>True once <see cref="Dispose()"/> ran.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary><c>importlib.import_module(moduleName)</c>.</summary>
    /// <exception cref="Errors.PythonErrorException">The import raised (e.g. <c>ModuleNotFoundError</c>).</exception>
    public abstract PythonRef Import(string moduleName);

    /// <summary>Runs the Python file at <paramref name="path"/> as a fresh module and returns the module.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="Errors.PythonErrorException">Running the file raised.</exception>
    public abstract PythonRef LoadFile(string path);

    /// <summary>Releases the session's Python objects. Harmless when called again.</summary>
    public void Dispose()
    {
        if (IsDisposed)
            return;
        IsDisposed = true;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources; <paramref name="disposing"/> is false from a finalizer.</summary>
    protected virtual void Dispose(bool disposing) { }

    /// <summary>Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose()"/>.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);
}
