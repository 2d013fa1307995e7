// Design notes: the session in this process's embedded interpreter.
// - Every Python call runs with the GIL (PythonRuntime.Run) and goes through interop_helpers.calls.call, which
//   applies the grad mode and exports tensors in the result through the export policy; so this file only
//   converts .NET arguments to Python objects and exported results to PythonValue (InProcessConversions).
// - When PyTorch is installed, the session imports it first through TorchTensor.Import (the one guarded import),
//   so that the one-libtorch-per-process guard runs before any user code can import torch.
// - The session tracks the PythonRefs it handed out and disposes those still alive when it is disposed.
using Interop.Embedding;
using Interop.Errors;
using Interop.Torch;
using Python.Runtime;

namespace Interop.Sessions;

/// <summary>The session in this process's embedded interpreter.</summary>
internal sealed class InProcessSession : PythonSession
{
    private const string CallsModule = PythonRuntime.HelperPackage + ".calls";
    private readonly Lock _lock = new();
    private readonly HashSet<InProcessRef> _refs = [];

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
            return Track(calls.InvokeMethod("load_file", pyPath));
        });
    }

    /// <summary>Calls <paramref name="callee"/>; the one call path of the session.</summary>
    internal PythonValue Call(InProcessRef callee, IReadOnlyList<object?> args, CallOptions? options)
    {
        ArgumentNullException.ThrowIfNull(args);
        ThrowIfDisposed();
        _ = callee.Object; // fail fast; read again with the GIL below
        var o = options ?? CallOptions.Default;
        try
        {
            return PythonRuntime.Run(() =>
            {
                using var temporaries = new InProcessConversions.Temporaries();
                var pyArgs = InProcessConversions.ToTuple(this, args, temporaries);
                var pyKwargs = InProcessConversions.ToDict(this, o.KeywordArguments, temporaries);
                using var grad = new PyInt((int)o.GradMode);
                // The callee is read with the GIL held, right before the tuple takes its own reference: a Dispose on another
                // thread (which releases the object with the GIL) either happened before (ObjectDisposedException) or waits.
                using var callArgs = new PyTuple([callee.Object, pyArgs, pyKwargs, grad, PythonBools.Get(o.Export.Detach), PythonBools.Get(o.Export.Upcast)]);
                return InProcessConversions.ToValue(this, CallFunction.Invoke(callArgs));
            });
        }
        catch (PythonErrorException e)
        {
            throw TorchExport.Translate(e);
        }
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

    internal InProcessRef Track(PyObject obj)
    {
        var reference = new InProcessRef(this, obj);
        lock (_lock)
            _refs.Add(reference);
        return reference;
    }

    internal void Untrack(InProcessRef reference)
    {
        lock (_lock)
            _refs.Remove(reference);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            InProcessRef[] live;
            lock (_lock)
            {
                live = [.. _refs];
                _refs.Clear();
            }
            foreach (var reference in live)
                reference.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>A Python object of an <see cref="InProcessSession"/>.</summary>
internal sealed class InProcessRef : PythonRef
{
    private readonly InProcessSession _session;
    private PyObject? _object;

    public InProcessRef(InProcessSession session, PyObject obj) : base(session)
    {
        _session = session;
        _object = obj;
        PythonType = InProcessConversions.TypeName(obj);
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

    public override string ToString() => IsDisposed ? "disposed PythonRef" : $"PythonRef {PythonType}";

    protected override void Dispose(bool disposing)
    {
        var obj = Interlocked.Exchange(ref _object, null);
        if (disposing && obj is not null)
        {
            _session.Untrack(this);
            if (PythonRuntime.IsRunning)
            {
                using var gil = PythonRuntime.AcquireGil();
                obj.Dispose();
            }
        }
        base.Dispose(disposing);
    }
}
