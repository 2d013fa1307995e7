// Design notes: the session in this process's embedded interpreter.
// - Every Python call runs with the GIL (PythonRuntime.Run) and goes through interop_helpers.calls.call, which
//   applies the grad mode and exports tensors in the result through the export policy; so this file only
//   converts .NET arguments to Python objects and exported results to PythonValue (InProcessConversions).
//   A default-grad call without an output sink asks calls.call for the raw result and exports it through
//   InProcessConversions.Export (plain values and plain tensors without Python frames, the rest by calls.export_tree).
//   The call itself goes straight through CPython's vectorcall (Native/DirectCall), with one GIL acquisition per call.
// - When PyTorch is installed, the session imports it first through TorchTensor.Import (the one guarded import),
//   so that the one-libtorch-per-process guard runs before any user code can import torch.
// - The session tracks the PythonRefs it handed out WEAKLY (a ConditionalWeakTable) and disposes those still alive
//   when it is disposed: a reference (or a PythonValue holding one) that nobody disposes is collected by .NET's
//   GC, and pythonnet's finalizer queues its Python reference for the next GIL holder (PendingReleases.Drain).
// - Releases never wait indefinitely for the GIL (PendingReleases.Release): disposing a reference, a value or the
//   session while another thread is stuck in a call returns, and the objects go when the GIL comes free.
// - LoadFile registers a fresh module in sys.modules (interop_helpers.calls.load_file); the reference's release (Dispose,
//   or its finalizer) also removes that entry, so a loaded and disposed file leaves nothing behind in Python.
using System.Runtime.CompilerServices;
using Interop.Embedding;
using Interop.Errors;
using Interop.Native;
using Interop.Torch;
using Python.Runtime;

namespace Interop.Sessions;

/// <summary>The session in this process's embedded interpreter.</summary>
internal sealed class InProcessSession : PythonSession
{
    private const string CallsModule = PythonRuntime.HelperPackage + ".calls";
    private readonly ConditionalWeakTable<InProcessRef, object?> _refs = new();

    public InProcessSession(PythonOptions? options)
    {
        var searchPaths = SearchPaths.Check(options?.AdditionalPaths ?? [], "PythonOptions.AdditionalPaths");
        var installation = options is null ? PythonRuntime.Installation : PythonRuntime.Initialize(options);
        HasTorch = installation.TorchVersion is not null;
        Description = $"in-process Python {installation.Version.ToString(3)}" +
                      (HasTorch ? $", PyTorch {installation.TorchVersion}" : ", no PyTorch");
        PythonRuntime.Run(() =>
        {
            if (HasTorch)
                TorchTensor.Import().Dispose();
            using var calls = Py.Import(CallsModule);
            if (searchPaths.Count > 0)
            {
                // The session's search paths, at the front of sys.path (once each), also when Python was already running.
                using var sys = Py.Import("sys");
                using var path = sys.GetAttr("path");
                using var front = new PyInt(0);
                var present = path.As<string[]>().ToHashSet(StringComparer.Ordinal);
                foreach (var dir in searchPaths.Reverse().Where(d => !present.Contains(d)))
                {
                    using var item = new PyString(dir);
                    path.InvokeMethod("insert", front, item).Dispose();
                }
            }
            return 0;
        });
    }

    public bool HasTorch { get; }

    public override string Description { get; }

    public override PythonRef Import(string moduleName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(moduleName);
        ThrowIfDisposed();
        return PythonRuntime.Run(() =>
        {
            using var importlib = Py.Import("importlib");
            using var name = new PyString(moduleName);
            return Track(importlib.InvokeMethod("import_module", name));
        });
    }

    public override PythonRef LoadFile(string path)
    {
        ThrowIfDisposed();
        var full = CheckPythonFile(path);
        return PythonRuntime.Run(() =>
        {
            using var calls = Py.Import(CallsModule);
            using var pyPath = new PyString(full);
            var module = calls.InvokeMethod("load_file", pyPath);
            string name;
            try
            {
                using var pyName = module.GetAttr("__name__");
                name = pyName.As<string>();
            }
            catch
            {
                module.Dispose();
                throw;
            }
            return Track(module, name);
        });
    }

    /// <summary>Calls <paramref name="callee"/>; the one call path of the session.</summary>
    /// <remarks>
    /// A timeout (<see cref="CallOptions.Timeout"/>) or a cancellable token interrupts the Python code (CallInterrupt) and
    /// throws the exception types isolated mode throws: <see cref="WorkerTimeoutException"/>, <see cref="OperationCanceledException"/>.
    /// </remarks>
    internal PythonValue Call(InProcessRef callee, IReadOnlyList<object?> args, CallOptions? options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ThrowIfDisposed();
        _ = callee.Object; // fail fast; read again with the GIL below
        var o = options ?? CallOptions.Default;
        cancellationToken.ThrowIfCancellationRequested();
        using var interrupt = CallInterrupt.For(o.Timeout, cancellationToken);
        try
        {
            var value = PythonRuntime.Run(() =>
            {
                using var temporaries = new InProcessConversions.Temporaries { Arrays = o.Arrays };
                var pyArgs = InProcessConversions.ToTuple(this, args, temporaries);
                var pyKwargs = InProcessConversions.ToDict(this, o.KeywordArguments, temporaries);
                var grad = GradMode(o.GradMode, temporaries);
                // The callee is read with the GIL held, right before the call borrows it: a Dispose on another
                // thread (which releases the object with the GIL) either happened before (ObjectDisposedException) or waits.
                // Borrowing is enough: calls.call is a Python function, whose frame takes its own references to its
                // arguments before any bytecode runs (and so before the GIL can pass to the disposing thread); the
                // argument tuple, the keyword dict and the sink belong to this call until it returns.
                var output = Output;
                using var sink = output is null ? null : OutputSink(output);
                var detach = CPython.Address(PythonBools.Get(o.Export.Detach));
                var upcast = CPython.Address(PythonBools.Get(o.Export.Upcast));
                // A default-grad call without an output sink returns its raw result (export=False), exported below by
                // InProcessConversions.Export: the same result and errors, without export_tree's Python frames for the
                // common results (plain values, a plain tensor). Other calls export inside calls.call, in their grad mode.
                var exportHere = sink is null && HasTorch && o.GradMode == Sessions.GradMode.Default;
                // calls.call(callee, args, kwargs, grad_mode, detach, upcast[, export]) straight through CPython's vectorcall
                // (Native/DirectCall): no argument tuple, no pythonnet invocation; errors come back as PythonErrorException.
                ReadOnlySpan<nint> callArgs = sink is not null
                    ? [CPython.Address(sink), CPython.Address(callee.Object), pyArgs, CPython.Address(pyKwargs), grad, detach, upcast]
                    : exportHere
                        ? [CPython.Address(callee.Object), pyArgs, CPython.Address(pyKwargs), grad, detach, upcast, CPython.Address(PythonBools.Get(false))]
                        : [CPython.Address(callee.Object), pyArgs, CPython.Address(pyKwargs), grad, detach, upcast];
                var function = CPython.Address(sink is null ? CallFunction : CallWithOutputFunction);
                nint result;
                interrupt?.Enter();
                try
                {
                    using (Diagnostics.PythonWarnings.Capture("PythonRef.Call")) // the callee's warnings reach PythonWarnings.Raised
                    {
                        result = DirectCall.CallRaw(function, callArgs, callArgs.Length, 0, "PythonRef.Call");
                        if (exportHere)
                            result = InProcessConversions.Export(result, detach, upcast);
                    }
                }
                finally
                {
                    interrupt?.Exit();
                }
                return InProcessConversions.ToValue(this, result);
            });
            if (interrupt?.Reason is not null)
            {
                // The code finished anyway (it caught the interrupt, or a native call returned just then): past the limit all the same.
                value.Dispose();
                throw interrupt.Exception(null);
            }
            return value;
        }
        catch (PythonErrorException e) when (interrupt?.Reason is not null)
        {
            throw interrupt.Exception(e);
        }
        catch (PythonErrorException e)
        {
            throw TorchExport.Translate(ArgumentHints.Annotate(e, args, o.KeywordArguments));
        }
    }

    // The grad modes 0, 1, 2 as Python ints (small ints: shared by CPython; made once with the GIL, never disposed).
    private static readonly PyObject?[] s_gradModes = new PyObject?[3];

    private static nint GradMode(GradMode mode, InProcessConversions.Temporaries temporaries)
    {
        var index = (int)mode;
        if ((uint)index >= (uint)s_gradModes.Length)
            return CPython.Address(temporaries.Own(new PyInt(index))); // not a defined mode: calls.grad_context names it in its ValueError
        return CPython.Address(s_gradModes[index] ??= new PyInt(index));
    }

    // interop_helpers.calls.call, looked up once with the GIL (a module function lives as long as the interpreter).
    private static PyObject? s_call;

    private static PyObject CallFunction
    {
        get
        {
            Gil.AssertHeld();
            if (s_call is null)
            {
                using var calls = Py.Import(CallsModule);
                s_call = calls.GetAttr("call");
            }
            return s_call;
        }
    }

    // interop_helpers.calls.call_with_output, looked up once with the GIL.
    private static PyObject? s_callWithOutput;

    private static PyObject CallWithOutputFunction
    {
        get
        {
            Gil.AssertHeld();
            if (s_callWithOutput is null)
            {
                using var calls = Py.Import(CallsModule);
                s_callWithOutput = calls.GetAttr("call_with_output");
            }
            return s_callWithOutput;
        }
    }

    // A Python callable (a pythonnet-wrapped delegate) that writes Python's text to the writer, serialised on it.
    private static PyObject OutputSink(TextWriter writer) =>
        PyObject.FromManagedObject(new Action<string>(text =>
        {
            lock (writer)
                writer.Write(text);
        }));

    /// <summary>A reference to <paramref name="obj"/> (taking ownership); <paramref name="loadedModule"/>: its sys.modules name when LoadFile made it.</summary>
    internal InProcessRef Track(PyObject obj, string? loadedModule = null)
    {
        var reference = new InProcessRef(this, obj, loadedModule);
        _refs.AddOrUpdate(reference, null);
        return reference;
    }

    internal void Untrack(InProcessRef reference) => _refs.Remove(reference);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            InProcessRef[] live = [.. _refs.Select(p => p.Key)];
            _refs.Clear();
            foreach (var reference in live)
                reference.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>
/// Drops one reference's claim on a module that LoadFile registered; the last claim removes it from <c>sys.modules</c>
/// (run by Dispose or queued by a finalizer). LoadFile of the same path returns the same module while a claim is alive.
/// Claims are counted with the GIL held (the constructor runs inside LoadFile, Dispose as a release), so a load and a
/// release never interleave.
/// </summary>
internal sealed class LoadedModuleEntry(string name) : IDisposable
{
    private static readonly Dictionary<string, int> s_claims = new(StringComparer.Ordinal);

    /// <summary>One more live reference to the loaded module <paramref name="module"/>. Requires the GIL.</summary>
    public static void Claim(string module)
    {
        Gil.AssertHeld();
        s_claims[module] = s_claims.GetValueOrDefault(module) + 1;
    }

    public void Dispose()
    {
        if (s_claims.TryGetValue(name, out var claims) && claims > 1)
        {
            s_claims[name] = claims - 1;
            return;
        }
        s_claims.Remove(name);
        using var sys = Py.Import("sys");
        using var modules = sys.GetAttr("modules");
        using var key = new PyString(name);
        using var _ = modules.InvokeMethod("pop", key, PyObject.None);
    }
}

/// <summary>A Python object of an <see cref="InProcessSession"/>.</summary>
internal sealed class InProcessRef : PythonRef
{
    private readonly InProcessSession _session;
    private readonly string? _loadedModule;
    private PyObject? _object;

    public InProcessRef(InProcessSession session, PyObject obj, string? loadedModule = null) : base(session)
    {
        _session = session;
        _object = obj;
        _loadedModule = loadedModule;
        if (loadedModule is not null)
            LoadedModuleEntry.Claim(loadedModule);
        PythonType = InProcessConversions.TypeName(obj);
        if (loadedModule is null)
            GC.SuppressFinalize(this); // only a loaded module has something to undo beyond pythonnet's own finalizer
    }

    // A loaded module nobody disposed: its sys.modules entry would keep it alive for ever. The PyObject itself is
    // released by pythonnet's finalizer (never touched here: it may already have run).
    ~InProcessRef()
    {
        if (_loadedModule is not null)
            PendingReleases.Queue(new LoadedModuleEntry(_loadedModule));
    }

    /// <summary>The object; valid until disposed.</summary>
    public PyObject Object
    {
        get
        {
            ThrowIfDisposed();
            return _object ?? throw new ObjectDisposedException(nameof(PythonRef));
        }
    }

    public override string PythonType { get; }

    public override PythonRef GetAttr(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ThrowIfDisposed();
        // Object is read with the GIL held: a concurrent Dispose releases it with the GIL, so it cannot vanish in use.
        return PythonRuntime.Run(() => _session.Track(Object.GetAttr(name)));
    }

    public override PythonValue Call(IReadOnlyList<object?> args, CallOptions? options) => _session.Call(this, args, options);

    /// <summary>Runs the call on the thread pool; a timeout or cancellation interrupts its Python code (see <see cref="CallInterrupt"/>).</summary>
    public override Task<PythonValue> CallAsync(IReadOnlyList<object?> args, CallOptions? options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ThrowIfDisposed();
        ct.ThrowIfCancellationRequested();
        var call = Task.Run(() => _session.Call(this, args, options, ct), CancellationToken.None);
        var timeout = (options ?? CallOptions.Default).Timeout;
        return timeout is null && !ct.CanBeCanceled ? call : WaitBounded(call, timeout, ct);
    }

    // How long past the timeout (or the cancellation) the caller waits for the interrupt to land. Python code stops at its
    // next bytecode boundary well within it; a native call that does not return (C code holding the GIL) is not waited for:
    // the caller gets its exception at the bound, the call ends when the native code returns, and its late result is disposed.
    internal static readonly TimeSpan InterruptGrace = TimeSpan.FromMilliseconds(250);

    private static async Task<PythonValue> WaitBounded(Task<PythonValue> call, TimeSpan? timeout, CancellationToken ct)
    {
        using var giveUp = new CancellationTokenSource();
        if (timeout is { } t)
            giveUp.CancelAfter(t + InterruptGrace);
        using var onCancel = ct.Register(() => giveUp.CancelAfter(InterruptGrace));
        try
        {
            return await call.WaitAsync(giveUp.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (giveUp.IsCancellationRequested && !call.IsCompleted)
        {
            _ = call.ContinueWith(static late =>
            {
                if (late.IsCompletedSuccessfully)
                    late.Result.Dispose();
                else
                    _ = late.Exception; // observed: the interrupt's exception, raised once the native code returned
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            if (ct.IsCancellationRequested)
                throw new OperationCanceledException("The call was cancelled; its Python code is in a native call that cannot be interrupted, and is interrupted when it returns.", null, ct);
            throw new WorkerTimeoutException(timeout!.Value);
        }
    }

    public override string ToString() => IsDisposed ? "disposed PythonRef" : $"PythonRef {PythonType}";

    protected override void Dispose(bool disposing)
    {
        var obj = Interlocked.Exchange(ref _object, null);
        if (disposing && obj is not null)
        {
            _session.Untrack(this);
            // Never waits indefinitely for the GIL (a call stuck in C code on another thread keeps it).
            PendingReleases.Release(obj, _loadedModule is null ? null : new LoadedModuleEntry(_loadedModule));
        }
        base.Dispose(disposing);
    }
}
