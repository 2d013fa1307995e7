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
    public static PythonSession InProcess() => new InProcessSession(null);

    /// <summary>
    /// As <see cref="InProcess()"/>, starting the embedded interpreter with <paramref name="options"/> if it is not running
    /// yet; its <see cref="Embedding.PythonOptions.AdditionalPaths"/> are put at the front of <c>sys.path</c> either way
    /// (the same option isolated workers honour through <see cref="global::Interop.Isolated.WorkerOptions.Python"/>).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">A search path does not exist.</exception>
    /// <exception cref="InvalidOperationException">Python already runs with another interpreter than <paramref name="options"/> names.</exception>
    public static PythonSession InProcess(Embedding.PythonOptions options) => new InProcessSession(options ?? throw new ArgumentNullException(nameof(options)));

    /// <summary>
    /// A session whose Python runs in worker processes (plain CPython, <c>python -m interop_helpers.worker</c>):
    /// crashes stay in the worker, PyTorch's libtorch never meets TorchSharp's, tensors travel through shared memory.
    /// See docs/isolated.md. This process loads neither pythonnet's runtime nor libpython for it.
    /// </summary>
    public static PythonSession Isolated(global::Interop.Isolated.WorkerOptions? options = null) => new global::Interop.Isolated.IsolatedSession(options ?? global::Interop.Isolated.WorkerOptions.Default);

    /// <summary>
    /// A session of the given <paramref name="mode"/>; <see cref="global::Interop.Isolated.SessionMode.Auto"/> picks isolated mode when
    /// this process has a libtorch that is not Python's own (see <see cref="global::Interop.Isolated.SessionModeChooser"/>).
    /// </summary>
    public static PythonSession Create(global::Interop.Isolated.SessionMode mode, global::Interop.Isolated.WorkerOptions? options = null) =>
        global::Interop.Isolated.SessionModeChooser.Resolve(mode, options?.Python) == global::Interop.Isolated.SessionMode.Isolated ? Isolated(options) : new InProcessSession(options?.Python);

    /// <summary>A short description (e.g. <c>in-process Python 3.11</c>).</summary>
    public abstract string Description { get; }

    /// <summary>True once <see cref="Dispose()"/> ran.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>
    /// Where Python's output (<c>print</c>, <c>sys.stdout</c> and <c>sys.stderr</c>) goes; null (the default): the process's
    /// console. In-process, the text of calls on this session is written as it is printed (threads the Python code starts
    /// still write to the console); isolated, each line a worker prints is written as <c>[worker PID] line</c>
    /// (with null: to this process's stderr, unless <see cref="global::Interop.Isolated.WorkerOptions.EchoWorkerOutput"/> is false).
    /// Writes are serialised on the writer; it may be changed at any time.
    /// </summary>
    public TextWriter? Output { get; set; }

    /// <summary><c>importlib.import_module(moduleName)</c>.</summary>
    /// <exception cref="Errors.PythonErrorException">The import raised (e.g. <c>ModuleNotFoundError</c>).</exception>
    public abstract PythonRef Import(string moduleName);

    /// <summary>
    /// The module of the Python file at <paramref name="path"/> (relative paths are taken from the working directory;
    /// use <c>Path.Combine(AppContext.BaseDirectory, ...)</c> for files deployed with the application). The module is
    /// named after the file (<c>tiny_net</c>), the file's folder is importable (sibling modules), and loading the same
    /// path again returns the same module without running it again, unless the file changed, in which case it runs
    /// again under the same name: repeated loads never accumulate modules. The same in both session kinds (in a worker,
    /// per worker process).
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="Errors.PythonErrorException">Running the file raised.</exception>
    public abstract PythonRef LoadFile(string path);

    // ---- scripting -----------------------------------------------------------------------------------------
    // Exec / Eval call functions of interop_helpers.calls like any other Python function, so their arguments (the
    // globals) and results follow the one conversion contract of the session kind, and options (timeout, grad mode,
    // array conversion) apply unchanged.

    /// <summary>
    /// Runs Python source text (<c>exec</c>) in a fresh <c>__main__</c>-like namespace that holds <paramref name="globals"/>
    /// (converted like call arguments), and returns the globals the script bound as a <see cref="PythonValueKind.Mapping"/>:
    /// names that do not start with <c>__</c>, are not modules, and are not still bound to the very object passed in.
    /// </summary>
    /// <example><code>
    /// using var result = session.Exec("total = sum(xs) * scale", new Dictionary&lt;string, object?&gt; { ["xs"] = new[] { 1, 2 }, ["scale"] = 2.0 },
    ///                                 new CallOptions { Arrays = ArrayConversion.NumPy });
    /// double total = result["total"].AsDouble();
    /// </code></example>
    /// <exception cref="Errors.PythonErrorException">The script raised (or has a syntax error); carries the traceback.</exception>
    /// <exception cref="Errors.UnsupportedArgumentException">A global's type cannot be passed.</exception>
    public PythonValue Exec(string source, IReadOnlyDictionary<string, object?>? globals = null, CallOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return Helper("exec_source").Call([source, Globals(globals)], options);
    }

    /// <summary><see cref="Exec"/> of the file at <paramref name="path"/> (tracebacks name the file and its lines).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public PythonValue ExecFile(string path, IReadOnlyDictionary<string, object?>? globals = null, CallOptions? options = null) =>
        Helper("exec_file").Call([CheckPythonFile(path), Globals(globals)], options);

    /// <summary>Evaluates a Python expression (<c>eval</c>) with <paramref name="globals"/> as its names and returns its value.</summary>
    /// <exception cref="Errors.PythonErrorException">The expression raised (or is not an expression).</exception>
    public PythonValue Eval(string expression, IReadOnlyDictionary<string, object?>? globals = null, CallOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(expression);
        return Helper("eval_source").Call([expression, Globals(globals)], options);
    }

    /// <summary><see cref="Exec"/> without blocking; cancellation and <see cref="CallOptions.Timeout"/> stop the script as they stop a call.</summary>
    public Task<PythonValue> ExecAsync(string source, IReadOnlyDictionary<string, object?>? globals = null, CallOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        return Helper("exec_source").CallAsync([source, Globals(globals)], options, cancellationToken);
    }

    /// <summary><see cref="Eval"/> without blocking; cancellation and <see cref="CallOptions.Timeout"/> stop it as they stop a call.</summary>
    public Task<PythonValue> EvalAsync(string expression, IReadOnlyDictionary<string, object?>? globals = null, CallOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(expression);
        return Helper("eval_source").CallAsync([expression, Globals(globals)], options, cancellationToken);
    }

    private static ScriptGlobals Globals(IReadOnlyDictionary<string, object?>? globals)
    {
        var copy = new ScriptGlobals();
        if (globals is not null)
        {
            foreach (var (name, value) in globals)
            {
                ArgumentException.ThrowIfNullOrWhiteSpace(name, nameof(globals));
                copy[name] = value;
            }
        }
        return copy;
    }

    /// <summary>The globals of a script (a dictionary argument; error hints call its entries "global 'name'").</summary>
    internal sealed class ScriptGlobals() : Dictionary<string, object?>(StringComparer.Ordinal);

    private readonly Dictionary<string, PythonRef> _helpers = new(StringComparer.Ordinal);
    private PythonRef? _helperModule;

    /// <summary>A function of <c>interop_helpers.calls</c> in this session (looked up once; released with the session).</summary>
    internal PythonRef Helper(string name)
    {
        ThrowIfDisposed();
        lock (_helpers)
        {
            if (_helpers.TryGetValue(name, out var f) && !f.IsDisposed)
                return f;
            _helperModule ??= Import(Embedding.PythonRuntime.HelperPackage + ".calls");
            return _helpers[name] = _helperModule.GetAttr(name);
        }
    }

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

    /// <summary>The full path of the Python file <see cref="LoadFile"/> is given, after checking it exists (for implementations).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    protected static string CheckPythonFile(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new FileNotFoundException($"No Python file at '{full}'.", full);
        return full;
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose()"/>.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);
}
