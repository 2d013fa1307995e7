// Design notes: the process-wide embedded interpreter.
// - Start-up happens once per process, from whichever thread asks first; concurrent callers block on one
//   lock and all see the same result. After start-up the GIL is released, so any thread (thread-pool and
//   async continuations included) can take it through AcquireGil().
// - Shutdown is owned here: pythonnet's own ProcessExit handler is replaced by ours, which runs Python's exit
//   handlers on a watchdog thread and gives up after a bounded wait (for instance when a thread is stuck in
//   Python holding the GIL). Giving up must also end the process: native static destructors that run in exit()
//   wait for the GIL too (libtorch_python's, PyTorch 2.6), so after the bound the process flushes .NET's console
//   and ends with _exit and the exit code it was going to return (Native/ProcessEnd). The same bound also guards
//   the rest of a normal exit, after the handlers ran: a process still alive ShutdownTimeout later ends the same way.
// - A Python runtime cannot be restarted in one process: after shutdown, Initialize throws.
using System.Reflection;
using Interop.Errors;
using Interop.Native;
using Python.Runtime;

namespace Interop.Embedding;

/// <summary>The embedded CPython runtime: start-up, the GIL, the helper package and shutdown.</summary>
public static class PythonRuntime
{
    /// <summary>The import name of the helper package under <c>python/</c>.</summary>
    public const string HelperPackage = "interop_helpers";

    private static readonly Lock s_lock = new();
    private static volatile PythonInstallation? s_installation;
    private static volatile bool s_shutDown;

    /// <summary>
    /// How long process exit waits for Python's exit handlers (and then for the rest of the exit) before ending the
    /// process without them: the console is flushed, then the process ends at once with <see cref="Environment.ExitCode"/>,
    /// skipping C <c>atexit</c> handlers, native static destructors and <see cref="AppDomain.ProcessExit"/> handlers
    /// that have not run yet.
    /// </summary>
    public static TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>True once <see cref="Initialize"/> has succeeded and until the process shuts Python down.</summary>
    public static bool IsRunning => s_installation is not null && !s_shutDown;

    /// <summary>The installation in use. Starts the runtime with default options when it is not running yet.</summary>
    public static PythonInstallation Installation => s_installation ?? Initialize();

    /// <summary>Where the <c>interop_helpers</c> package was found.</summary>
    public static string? HelperDirectory { get; private set; }

    /// <summary>
    /// Starts the embedded interpreter (once per process; later calls return the same installation).
    /// Safe to call from any thread, concurrently.
    /// </summary>
    /// <exception cref="InvalidOperationException">Python was started with other options, or already shut down.</exception>
    /// <exception cref="InteropException">Discovery failed (see <see cref="PythonDiscovery.Find(PythonOptions?)"/>).</exception>
    public static PythonInstallation Initialize(PythonOptions? options = null)
    {
        if (s_installation is { } running && options is null && !s_shutDown)
            return running;
        lock (s_lock)
        {
            if (s_shutDown)
                throw new InvalidOperationException("The embedded Python runtime was shut down and cannot be restarted in this process.");
            if (s_installation is { } existing)
            {
                if (options is not null && !Matches(existing, options))
                    throw new InvalidOperationException($"Python is already running in this process ({existing}); it cannot be restarted with other options.");
                return existing;
            }
            var installation = PythonDiscovery.Find(options);
            Start(installation, options ?? new PythonOptions());
            s_installation = installation;
            return installation;
        }
    }

    /// <summary>Takes the GIL on the calling thread, starting the runtime first if needed.</summary>
    public static Gil AcquireGil()
    {
        if (!IsRunning)
        {
            if (s_shutDown)
                throw new InvalidOperationException("The embedded Python runtime has been shut down.");
            Initialize();
        }
        return Gil.Acquire();
    }

    /// <summary>Runs <paramref name="action"/> with the GIL, translating Python errors into <see cref="PythonErrorException"/>.</summary>
    public static T Run<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        using var gil = AcquireGil();
        try
        {
            return action();
        }
        catch (PythonException e)
        {
            throw PythonErrors.Translate(e);
        }
    }

    /// <summary>Imports a Python module by name (with the GIL taken and errors translated).</summary>
    public static PyObject Import(string module) => Run(() => (PyObject)Py.Import(module));

    /// <summary>Throws <see cref="PythonPackageMissingException"/> unless <paramref name="package"/> is installed.</summary>
    public static void RequirePackage(string package) => Installation.Require(package);

    private static bool Matches(PythonInstallation existing, PythonOptions options) =>
        (options.PythonExecutable is null || SamePath(options.PythonExecutable, existing.Executable)) &&
        (options.LibraryPath is null || SamePath(options.LibraryPath, existing.LibraryPath));

    private static bool SamePath(string a, string? b) =>
        b is not null && string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    private static void Start(PythonInstallation installation, PythonOptions options)
    {
        // Files first, before Python is loaded: a missing or stale helper package or a search path that does not
        // exist is a typed error now, not a ModuleNotFoundError at the first call.
        var helpers = HelperFiles.Locate(options);
        var searchPaths = SearchPaths.Check(options.AdditionalPaths, "PythonOptions.AdditionalPaths");
        Runtime.PythonDLL = installation.LibraryPath;
        if (installation.BasePrefix is { } home)
            PythonEngine.PythonHome = home;
        CPython.Load(installation.LibraryPath);
        PythonEngine.Initialize(setSysArgv: false);
        ReplaceShutdownHandler();
        PendingReleases.WatchCollections();
        try
        {
            ConfigureSysPath(installation, helpers, searchPaths);
            HelperDirectory = helpers;
        }
        finally
        {
            // Release the GIL held since Py_Initialize; every later use goes through AcquireGil.
            PythonEngine.BeginAllowThreads();
        }
    }

    private static void ConfigureSysPath(PythonInstallation installation, string helpers, IReadOnlyList<string> searchPaths)
    {
        using var sys = Py.Import("sys");
        using var path = sys.GetAttr("path");
        var current = path.As<string[]>().ToList();
        var front = searchPaths.Append(helpers);
        var wanted = front.Concat(installation.SysPath).Concat(current).Where(p => p.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
        using var list = new PyList(wanted.Select(p => (PyObject)new PyString(p)).ToArray());
        sys.SetAttr("path", list);
        if (installation.Executable is { } exe)
        {
            using var value = new PyString(exe);
            sys.SetAttr("executable", value);
        }
    }

    /// <summary>
    /// The folder that contains <c>interop_helpers/</c> (<c>python/</c> beside the application, or
    /// <see cref="PythonOptions.HelperPackageDirectory"/>), checked to be complete and of this library's version.
    /// </summary>
    /// <exception cref="HelperPackageException">Missing, incomplete or from another version.</exception>
    internal static string FindHelperDirectory(PythonOptions options) => HelperFiles.Locate(options);

    /// <summary>
    /// The folder that contains the helper package <c>interop_helpers/</c> that sessions will use (<c>python/</c> beside
    /// the application, or <see cref="PythonOptions.HelperPackageDirectory"/>), after checking it is complete and of
    /// this library's version. Loads no Python. Start-up does the same check.
    /// </summary>
    /// <exception cref="HelperPackageException">Missing, incomplete or from another version; the message names the fix.</exception>
    public static string LocateHelperPackage(PythonOptions? options = null) => HelperFiles.Locate(options);

    /// <summary>This library's version (the packages' version), which the helper package must match.</summary>
    public static string LibraryVersion => HelperFiles.ExpectedVersion;

    private static void ReplaceShutdownHandler()
    {
        // pythonnet subscribes PythonEngine.OnProcessExit, which waits for the GIL without a bound.
        var handler = typeof(PythonEngine).GetMethod("OnProcessExit", BindingFlags.NonPublic | BindingFlags.Static);
        if (handler is not null)
            AppDomain.CurrentDomain.ProcessExit -= (EventHandler)Delegate.CreateDelegate(typeof(EventHandler), handler);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Shutdown();
    }

    /// <summary>
    /// Runs at process exit: takes the GIL (waiting at most <see cref="ShutdownTimeout"/>), runs Python's
    /// <c>atexit</c> handlers and flushes <c>sys.stdout</c>/<c>sys.stderr</c>, then lets the process end. When the
    /// GIL does not come free in time, or the rest of the exit (native destructors) has not ended the process
    /// <see cref="ShutdownTimeout"/> after the handlers, the process ends at once (<see cref="EndNow"/>).
    /// </summary>
    /// <remarks>
    /// pythonnet's own <c>PythonEngine.Shutdown</c> cannot be used at this point: it calls
    /// <c>GC.WaitForPendingFinalizers</c>, which never returns once .NET has begun process exit (measured:
    /// the process hangs). The interpreter's memory goes with the process, as for any exiting program.
    /// </remarks>
    internal static void Shutdown()
    {
        lock (s_lock)
        {
            if (s_installation is null || s_shutDown)
                return;
        }
        var worker = new Thread(() =>
        {
            try
            {
                using var gil = Gil.Acquire();
                s_shutDown = true;
                PythonEngine.Exec("import atexit, sys\natexit._run_exitfuncs()\nfor s in (sys.stdout, sys.stderr):\n    try:\n        s.flush()\n    except Exception:\n        pass\n");
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"[interop] Python exit handlers failed: {e.Message}");
            }
        })
        { IsBackground = true, Name = "Interop Python exit" };
        worker.Start();
        if (!worker.Join(ShutdownTimeout))
        {
            s_shutDown = true;
            Console.Error.WriteLine($"[interop] Python's exit handlers did not finish within {ShutdownTimeout.TotalSeconds:0.#} s (a thread is holding the GIL); exiting without them.");
            EndNow(); // exit() would run native destructors that wait for that GIL too
            return;
        }
        s_shutDown = true;
        // The handlers ran. What remains of the exit (other ProcessExit handlers, C atexit handlers, native static
        // destructors) may still meet a GIL that a Python thread took back meanwhile: bound it as well.
        var bound = ShutdownTimeout;
        new Thread(() =>
        {
            Thread.Sleep(bound);
            Console.Error.WriteLine($"[interop] the process had not ended {bound.TotalSeconds:0.#} s after Python's exit handlers (a native destructor waits for the GIL?); ending it now.");
            EndNow();
        })
        { IsBackground = true, Name = "Interop exit bound" }.Start();
    }

    /// <summary>Flushes .NET's console, then ends the process at once with <see cref="Environment.ExitCode"/> (no native destructors).</summary>
    private static void EndNow()
    {
        try
        {
            Console.Out.Flush();
            Console.Error.Flush();
        }
        catch (IOException)
        {
            // a closed console: nothing left to save
        }
        ProcessEnd.Immediately(Environment.ExitCode);
    }
}
