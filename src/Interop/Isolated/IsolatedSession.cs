// Design notes: the PythonSession over worker processes (docs/isolated.md).
// - References: a module or file reference is a *path* (module name or file + attribute names) that any worker
//   can resolve, so calls on it go to the least busy worker of the pool, and survive a worker's replacement.
//   Objects a call returns stay in the worker that made them: a *handle* reference, pinned to that worker;
//   after that worker dies, using it throws WorkerCrashedException.
// - Slots: the pool has WorkerCount slots; a slot starts its worker on first use and again after the worker
//   died (crash, timeout, cancellation), unless RestartAfterCrash is false.
// - This process needs neither pythonnet nor libpython in isolated mode: nothing here touches the embedded runtime.
using System.Text.Json.Nodes;
using Interop.Embedding;
using Interop.Errors;
using Interop.Sessions;
using Interop.Torch;

namespace Interop.Isolated;

/// <summary>A session whose Python runs in worker processes.</summary>
internal sealed class IsolatedSession : PythonSession
{
    private readonly WorkerOptions _options;
    private readonly Lazy<(string Python, string PythonPath, PythonInstallation Installation)> _setup;
    private readonly Slot[] _slots;
    private readonly Lock _lock = new();
    private long _fileGenerations; // LoadFile's count (the generation of each file reference)

    public IsolatedSession(WorkerOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.WorkerCount, 1, nameof(options));
        _options = options;
        _slots = Enumerable.Range(0, options.WorkerCount).Select(_ => new Slot()).ToArray();
        // Files are checked now (the helper package, the search paths): a missing or stale helper folder is an error
        // at creation, not at the first call. Discovery runs a probe process, so it waits for the first worker.
        var python = options.Python ?? new PythonOptions();
        var helpers = HelperFiles.Locate(python);
        var searchPaths = SearchPaths.Check(python.AdditionalPaths, "PythonOptions.AdditionalPaths (WorkerOptions.Python)");
        // The workers' PYTHONPATH prefix: the search paths first (as in-process), then the helper package's folder.
        var pythonPath = string.Join(Path.PathSeparator, searchPaths.Append(helpers));
        _setup = new(() =>
        {
            var installation = PythonDiscovery.Find(python, requireSharedLibrary: false);
            return (installation.Executable ?? throw new WorkerStartException("Isolated mode needs a Python interpreter, not only a libpython path. Fix: set PythonOptions.PythonExecutable.", ""),
                    pythonPath, installation);
        });
    }

    public override string Description
    {
        get
        {
            var live = _slots.Select(s => s.Worker).FirstOrDefault(w => w is { IsAlive: true });
            return live is null ? $"isolated ({_options.WorkerCount} worker{(_options.WorkerCount == 1 ? "" : "s")}, not started)"
                : $"isolated Python {live.PythonVersion} (PyTorch {live.TorchVersion ?? "not installed"}), {_options.WorkerCount} worker{(_options.WorkerCount == 1 ? "" : "s")}";
        }
    }

    /// <summary>The process ids of the live workers (for tests and diagnostics).</summary>
    internal IReadOnlyList<int> WorkerProcessIds => LiveWorkers.Select(w => w.ProcessId).ToArray();

    /// <summary>The live workers (for tests).</summary>
    internal IReadOnlyList<WorkerProcess> LiveWorkers => _slots.Select(s => s.Worker).Where(w => w is { IsAlive: true }).Select(w => w!).ToArray();

    public override PythonRef Import(string moduleName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(moduleName);
        ThrowIfDisposed();
        return Resolve(new Target("module", moduleName, 0, [], null));
    }

    public override PythonRef LoadFile(string path)
    {
        ThrowIfDisposed();
        var full = CheckPythonFile(path);
        // Each load gets a new generation: a worker checks the file again (and runs it again if it changed) the first
        // time it sees a generation newer than its own, so calls on a loaded file make no file-system call.
        return Resolve(new Target("file", full, Interlocked.Increment(ref _fileGenerations), [], null));
    }

    internal IsolatedRef Resolve(Target target)
    {
        var reply = Exchange(target, [], null, "resolve", CancellationToken.None, out var worker);
        using (reply.Lease)
        {
            var value = reply.Value;
            if (value.Kind != WireKind.Object)
                throw new WorkerProtocolException("a resolve reply must describe an object");
            // Attributes of worker objects get their own handle, so they outlive the reference they came from.
            return value.Handle > 0
                ? new IsolatedRef(this, new Target("handle", null, value.Handle, [], worker), value.TypeName)
                : new IsolatedRef(this, target, value.TypeName);
        }
    }

    internal PythonValue Call(Target target, IReadOnlyList<object?> args, CallOptions? options, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        var reply = Exchange(target, args, options ?? CallOptions.Default, "call", cancellationToken, out var worker);
        try
        {
            return ToPythonValue(reply.Value, worker);
        }
        finally
        {
            reply.Lease?.Dispose(); // each tensor took its own reference on the lease
        }
    }

    private WorkerProcess.Reply Exchange(Target target, IReadOnlyList<object?> args, CallOptions? options, string op, CancellationToken cancellationToken, out WorkerProcess worker)
    {
        // The small calls of the hot path are framed straight from their arguments; every other call (and every
        // argument the encoder refuses) goes through the JSON encoder.
        WorkerProcess.OutgoingRequest request = (op == "call" && options is not null ? BinaryCall.TryCreate(target, args, options) : null)
            ?? (WorkerProcess.OutgoingRequest)EncodeJson(ref target, args, options, op);
        var timeout = options?.Timeout ?? _options.DefaultTimeout;
        for (var attempt = 0; ; attempt++)
        {
            if (target.Worker is { IsAlive: false } dead)
                throw dead.CrashInfo();
            // A worker picked from the pool comes with its load already counted (see PickWorker).
            var reserved = target.Worker is null;
            worker = target.Worker ?? PickWorker();
            var chosen = worker;
            try
            {
                return worker.Exchange(request, op == "call" ? timeout : null, cancellationToken, loadReserved: reserved);
            }
            catch (WorkerProcess.WorkerGoneException gone)
            {
                // Nothing was sent: a call on a module or file path may run on a fresh worker instead.
                if (target.Worker is not null || !_options.RestartAfterCrash || attempt > 0)
                    throw gone.Crash;
            }
            catch (PythonErrorException e)
            {
                throw TorchExport.Translate(ArgumentHints.Annotate(e, args, options?.KeywordArguments));
            }
            finally
            {
                if (!chosen.IsAlive)
                    Retire(chosen);
            }
        }
    }

    /// <summary>Encodes a request as JSON (a reference argument may pin <paramref name="target"/> to its worker).</summary>
    private JsonCall EncodeJson(ref Target target, IReadOnlyList<object?> args, CallOptions? options, string op)
    {
        var pinned = target;
        var encoder = new ArgumentEncoder(value => EncodeReference(value, ref pinned), options?.Arrays ?? ArrayConversion.Default);
        var encodedArgs = new JsonArray();
        JsonArray? names = null, values = null;
        for (var i = 0; i < args.Count; i++)
            encodedArgs.Add(EncodeArgument(encoder, args[i], $"argument {i}"));
        if (options?.KeywordArguments is { } kwargs)
        {
            names = [];
            values = [];
            foreach (var (name, value) in kwargs)
            {
                ConversionLimits.CheckText(name, $"keyword argument '{name}' (its name)");
                names.Add(name);
                values.Add(EncodeArgument(encoder, value, $"keyword argument '{name}'"));
            }
        }
        target = pinned;
        return new JsonCall(encoder, BuildRequest(op, pinned, encodedArgs, names, values, options));
    }

    /// <summary>A request encoded as JSON: its payloads are copied, then its region ids filled in.</summary>
    private sealed class JsonCall(ArgumentEncoder encoder, JsonObject request) : WorkerProcess.OutgoingRequest
    {
        public override void WritePayloads(WorkerProcess.RequestContext context)
        {
            if (encoder.HasPayloads)
                encoder.WritePayloads(context.RequestRegion(encoder.PayloadBytes));
        }

        public override byte[] Frame(long id, WorkerProcess.RequestContext context) => WorkerProcess.JsonFrame(request, id, context);
    }

    /// <summary>The JSON request of a call or resolve (defaults left out: the worker reads them as default).</summary>
    internal static JsonObject BuildRequest(string op, Target target, JsonArray args, JsonArray? names, JsonArray? values, CallOptions? options)
    {
        var request = new JsonObject
        {
            ["op"] = op,
            ["target"] = target.ToJson(),
            ["args"] = args,
        };
        if (names is { Count: > 0 })
        {
            request["kw_names"] = names;
            request["kw_values"] = values;
        }
        if (options is not null)
        {
            if (options.GradMode != GradMode.Default)
                request["grad"] = options.GradMode switch { GradMode.NoGrad => "no_grad", GradMode.InferenceMode => "inference", _ => "default" };
            if (!options.Export.Detach || options.Export.Upcast)
                request["export"] = new JsonObject { ["detach"] = options.Export.Detach, ["upcast"] = options.Export.Upcast };
        }
        return request;
    }

    private JsonObject EncodeArgument(ArgumentEncoder encoder, object? value, string where)
    {
        try
        {
            return encoder.Encode(value, where);
        }
        catch (ArgumentException e)
        {
            throw new UnsupportedArgumentException(value?.GetType() ?? typeof(object), where, e.Message);
        }
    }

    private JsonObject? EncodeReference(object value, ref Target target)
    {
        if (value is not PythonRef reference)
            return null;
        if (reference is not IsolatedRef isolated || !ReferenceEquals(isolated.Session, this))
            throw new ArgumentException("a PythonRef of another session cannot be passed to this one");
        ObjectDisposedException.ThrowIf(isolated.IsDisposed, isolated);
        var refTarget = isolated.Target;
        if (refTarget.Worker is { } w)
        {
            if (target.Worker is { } pinned && !ReferenceEquals(pinned, w))
                throw new ArgumentException("the arguments refer to objects in different worker processes; objects cannot move between workers");
            target = target with { Worker = w };
        }
        return new JsonObject { ["t"] = "object", ["ref"] = refTarget.ToJson() };
    }

    // Chooses and reserves under one lock: the chosen worker's Load counts the call before the lock is released,
    // so callers arriving together spread over the pool instead of all seeing the same idle worker.
    private WorkerProcess PickWorker()
    {
        lock (_lock)
        {
            var chosen = ChooseWorker();
            chosen.ReserveLoad();
            return chosen;
        }
    }

    private WorkerProcess ChooseWorker()
    {
        ThrowIfDisposed();
        Slot? best = null;
        foreach (var slot in _slots)
        {
            if (slot.Worker is { IsAlive: true } w && (best?.Worker is null || w.Load < best.Worker.Load))
                best = slot;
        }
        if (best?.Worker is { Load: 0 } idle)
            return idle;
        var empty = _slots.FirstOrDefault(s => s.Worker is null || !s.Worker.IsAlive);
        if (empty is not null)
        {
            if (empty.Worker is { } dead)
            {
                if (!_options.RestartAfterCrash)
                    throw dead.CrashInfo();
                Retire(dead);
            }
            var (python, pythonPath, _) = _setup.Value;
            var worker = WorkerProcess.Start(python, pythonPath, _options.StartTimeout, echoStderr: false);
            var pid = worker.ProcessId;
            worker.Output = line => WriteOutput(pid, line);
            empty.Worker = worker;
            return worker;
        }
        return best!.Worker!;
    }

    // One place for the workers' output: the session's Output writer, else this process's stderr (EchoWorkerOutput).
    private void WriteOutput(int pid, string line)
    {
        var text = $"[worker {pid}] {line}";
        if (Output is { } writer)
        {
            lock (writer)
                writer.WriteLine(text);
        }
        else if (_options.EchoWorkerOutput)
            Console.Error.WriteLine(text);
    }

    private void Retire(WorkerProcess worker)
    {
        // The process is gone; release its pipes and the regions no result still uses. Another caller may still be
        // inside that worker's Exchange (copying its argument, waiting for EOF): Dispose only drops the pool's
        // reference, and that caller releases the Process and the regions when it leaves. The slot keeps the worker
        // (for RestartAfterCrash = false and for CrashInfo) until a fresh worker replaces it.
        worker.Dispose();
    }

    internal PythonValue ToPythonValue(WireValue value, WorkerProcess worker) => value.Kind switch
    {
        WireKind.None => PythonValue.FromNone(),
        WireKind.Bool => PythonValue.FromBool(value.BoolValue),
        WireKind.Int => PythonValue.FromInt64(value.IntValue),
        WireKind.Float => PythonValue.FromDouble(value.FloatValue),
        WireKind.Str => PythonValue.FromString(value.StrValue!),
        WireKind.Bytes => PythonValue.FromBytes(value.BytesValue!),
        WireKind.List or WireKind.Tuple => PythonValue.FromSequence(value.Items.Select(i => ToPythonValue(i, worker)).ToArray(), value.Kind == WireKind.List ? "list" : "tuple"),
        WireKind.Dict when value.KeyValues is { } keys => PythonValue.FromMapping(keys.Zip(value.Items, (k, v) => new KeyValuePair<PythonValue, PythonValue>(ToPythonValue(k, worker), ToPythonValue(v, worker))).ToArray()),
        WireKind.Dict => PythonValue.FromMapping(value.Keys.Zip(value.Items, (k, v) => new KeyValuePair<PythonValue, PythonValue>(PythonValue.FromString(k), ToPythonValue(v, worker))).ToArray()),
        WireKind.Tensor => PythonValue.FromTensor(new SharedTensorData(value), "torch.Tensor"),
        WireKind.NDArray => PythonValue.FromTensor(new SharedTensorData(value), "numpy.ndarray"),
        WireKind.Object => PythonValue.FromObject(new IsolatedRef(this, new Target("handle", null, value.Handle, [], worker), value.TypeName, owned: true)),
        _ => throw new WorkerProtocolException($"unexpected value kind {value.Kind}"),
    };

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_lock)
            {
                // In parallel: each busy worker gets its grace period at the same time, not one after the other.
                Parallel.ForEach(_slots, slot => slot.Worker?.Dispose());
                foreach (var slot in _slots)
                    slot.Worker = null;
            }
        }
        base.Dispose(disposing);
    }

    private sealed class Slot
    {
        public WorkerProcess? Worker { get; set; }
    }

    /// <summary>
    /// What a reference points at: a module or file (any worker) or a handle (one worker), then attributes.
    /// <paramref name="Handle"/> is the worker's handle for a handle, the load's generation for a file (see LoadFile), 0 for a module.
    /// </summary>
    internal sealed record Target(string Base, string? Name, long Handle, string[] Attrs, WorkerProcess? Worker)
    {
        public JsonObject ToJson()
        {
            var json = new JsonObject { ["base"] = Base, ["attrs"] = new JsonArray(Attrs.Select(a => (JsonNode)a).ToArray()) };
            if (Name is null)
                json["handle"] = Handle;
            else
                json["name"] = Name;
            if (Base == "file" && Handle > 0)
                json["generation"] = Handle;
            return json;
        }
    }
}

/// <summary>A reference to an object in an isolated session.</summary>
internal sealed class IsolatedRef : PythonRef
{
    private readonly IsolatedSession _session;
    private readonly bool _owned;

    public IsolatedRef(IsolatedSession session, IsolatedSession.Target target, string pythonType, bool owned = false) : base(session)
    {
        _session = session;
        Target = target;
        PythonType = pythonType;
        _owned = owned || target.Base == "handle";
        if (!_owned)
            GC.SuppressFinalize(this);
    }

    /// <summary>A handle whose value was never disposed is released with the worker's next request.</summary>
    ~IsolatedRef() => Dispose(false);

    public IsolatedSession.Target Target { get; }

    public override string PythonType { get; }

    public override PythonRef GetAttr(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ThrowIfDisposed();
        return _session.Resolve(Target with { Attrs = [.. Target.Attrs, name] });
    }

    public override PythonValue Call(IReadOnlyList<object?> args, CallOptions? options)
    {
        ArgumentNullException.ThrowIfNull(args);
        ThrowIfDisposed();
        return _session.Call(Target, args, options, CancellationToken.None);
    }

    /// <summary>Runs the call on the thread pool; cancellation and timeouts stop the worker (which is then replaced).</summary>
    public override Task<PythonValue> CallAsync(IReadOnlyList<object?> args, CallOptions? options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ThrowIfDisposed();
        ct.ThrowIfCancellationRequested();
        return Task.Run(() => _session.Call(Target, args, options, ct), CancellationToken.None);
    }

    protected override void Dispose(bool disposing)
    {
        if (_owned && Target.Worker is { } worker)
            worker.ReleaseHandle(Target.Handle);
        base.Dispose(disposing);
    }

    public override string ToString() => $"PythonRef {PythonType} ({Target.Base} {Target.Name ?? Target.Handle.ToString(System.Globalization.CultureInfo.InvariantCulture)}{string.Concat(Target.Attrs.Select(a => "." + a))})";
}

/// <summary>A tensor result that lives in a worker's result region, read in place (no copy on the host).</summary>
internal sealed class SharedTensorData : TensorData
{
    private readonly RegionLease _lease;
    private readonly long _offset;

    public SharedTensorData(WireValue value) : base(value.DType!, value.Shape, null)
    {
        ObjectDisposedException.ThrowIf(!value.Lease!.TryAddRef(), value.Lease);
        _lease = value.Lease;
        _offset = value.Offset;
    }

    protected override nint GetAddress() => _lease.Region.Address + (nint)_offset;

    /// <summary>
    /// Another hold on the shared region, independent of this object (for a TorchSharp tensor over the memory):
    /// the region stays mapped until every hold and this data are disposed.
    /// </summary>
    public IDisposable AcquireHold()
    {
        ObjectDisposedException.ThrowIf(IsDisposed || !_lease.TryAddRef(), this);
        return new Hold(_lease);
    }

    private sealed class Hold(RegionLease lease) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
                lease.Dispose();
        }
    }

    protected override void Dispose(bool disposing)
    {
        _lease.Dispose();
        base.Dispose(disposing);
    }
}
