// Design notes: one worker process and its control pipe.
// - One request at a time: a caller takes the gate, writes its request, reads the reply on its own thread.
//   Callers queue on the gate; the worker runs one call at a time anyway (one GIL). Parallelism comes
//   from several workers (WorkerPool).
// - A timeout or a cancelled token abandons the call by killing the worker: the blocked read then sees EOF,
//   and the caller gets WorkerTimeoutException / OperationCanceledException; the pool starts a fresh worker
//   for the next call. Killing is the only reliable way to stop Python code that is stuck (in C, or holding
//   the GIL).
// - EOF without an abandon reason means the worker died: the caller gets WorkerCrashedException with the
//   exit status and the last lines of the worker's stderr (faulthandler prints a segfault's Python stack).
// - Workers are started from one long-lived thread (WorkerLauncher): PR_SET_PDEATHSIG, which the worker
//   sets, fires when the *thread* that forked it exits, so a thread-pool thread would kill workers early.
// - Lifetime across threads: any thread may Dispose a worker (the pool retires a dead one when another caller
//   picks a worker; the session disposes them all) while callers are still inside Exchange, copying into its request
//   region or reading its Process. So Dispose only stops the process and drops the owner's reference: the Process
//   object and the regions are released by whoever leaves last (Enter/Leave, a reference count), and each region is
//   itself reference-counted (SharedRegion.Acquire, RegionLease). Nothing is unmapped or disposed under a user.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Interop.Errors;

namespace Interop.Isolated;

/// <summary>A running worker process (plain CPython running <c>interop_helpers.worker</c>).</summary>
internal sealed partial class WorkerProcess : IDisposable
{
    private const int StderrLines = 40;
    private readonly Process _process;
    private readonly Stream _toWorker;
    private readonly Stream _fromWorker;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Queue<string> _stderr = new();
    private readonly ConcurrentQueue<int> _releasedResults = new();
    private readonly ConcurrentQueue<long> _releasedHandles = new();
    private readonly Dictionary<int, SharedRegion> _resultRegions = [];
    private readonly Dictionary<int, int> _resultLeases = [];
    private readonly List<int> _closedByWorker = [];
    // Two request regions taken in turn for payloads up to AlternateLimit: the host writing the lines the worker read in
    // the previous call must first take them back from the other core's cache (a 1 MiB write took 72 us instead of 23
    // us on the 2-core VM); the other region's lines have left that cache by then. Larger payloads use slot 0 only (their
    // copies bypass the cache, and two reserved regions of that size would double the /dev/shm they hold).
    private readonly SharedRegion?[] _requestRegions = new SharedRegion?[2];
    private int _requestSlot; // the slot of the request being prepared (one at a time: the exchange gate)
    private SharedRegion? _sentRegion; // the request region the request being exchanged wrote its payloads into (null: none)
    // Request regions that held a result (the worker answered in place, see LeaseFor) come back here when the result is
    // disposed, on any thread; the next request that needs a region takes one from here (under the gate) before making
    // one. A region that returns while MaxSpareRequestRegions wait is released, and the next request tells the worker.
    private readonly ConcurrentQueue<SharedRegion> _returnedRequestRegions = new();
    private readonly ConcurrentQueue<int> _releasedRequestRegions = new();
    private int _requestTurns;
    private int _nextRequestRegion;
    private long _nextId;
    private int _load;
    private volatile string? _abandonReason;
    private readonly Lock _abandonLock = new();
    private long _awaiting; // the id of the request whose reply is awaited (0: none), guarded by _abandonLock
    private volatile bool _dead;
    private WorkerCrashedException? _crash;
    private int _users = 1; // the owner's reference (dropped by Dispose) + one per thread inside Exchange or CrashInfo

    private ControlBlock? _control; // null: every frame goes over the pipes (the worker could not use the block)

    private WorkerProcess(Process process, ControlBlock? control)
    {
        _process = process;
        _control = control;
        _toWorker = process.StandardInput.BaseStream;
        _fromWorker = process.StandardOutput.BaseStream;
        ProcessId = process.Id;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            lock (_stderr)
            {
                _stderr.Enqueue(e.Data);
                while (_stderr.Count > StderrLines)
                    _stderr.Dequeue();
            }
            if (Output is { } output)
                output(e.Data);
            else if (EchoStderr)
                Console.Error.WriteLine($"[worker {ProcessId}] {e.Data}");
        };
        process.BeginErrorReadLine();
    }

    /// <summary>Whether new workers get a control block (benchmarks compare the pipes-only transport with it).</summary>
    internal static bool UseControlBlocks { get; set; } = true;

    /// <summary>The worker's process id.</summary>
    public int ProcessId { get; }

    /// <summary>The worker's Python version (from its handshake).</summary>
    public string PythonVersion { get; private set; } = "";

    /// <summary>The worker's PyTorch version, read without importing torch; null when torch is not installed.</summary>
    public string? TorchVersion { get; private set; }

    /// <summary>True while the process runs and no call has found it dead.</summary>
    public bool IsAlive => !_dead && !HasExited();

    /// <summary>Receives each line the worker writes to stderr (its print() output too); when set, instead of <see cref="EchoStderr"/>.</summary>
    public Action<string>? Output { get; set; }

    /// <summary>Copy the worker's stderr lines to this process's stderr as well.</summary>
    public bool EchoStderr { get; init; }

    /// <summary>Number of calls waiting for or holding the gate.</summary>
    public int Load => _load;

    /// <summary>Counts a call the pool has just routed here; the matching <see cref="Exchange(OutgoingRequest, TimeSpan?, CancellationToken, bool)"/> passes <c>loadReserved: true</c>.</summary>
    public void ReserveLoad() => Interlocked.Increment(ref _load);

    /// <summary>The last lines of the worker's stderr.</summary>
    public string StderrTail
    {
        get
        {
            lock (_stderr)
                return string.Join(Environment.NewLine, _stderr);
        }
    }

    private bool HasExited()
    {
        try
        {
            return _process.HasExited;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    /// <summary>Starts a worker and waits for its handshake (<paramref name="useControlBlock"/>: offer it a shared control block; false: frames over the pipes only).</summary>
    public static WorkerProcess Start(string python, string helperDirectory, TimeSpan startTimeout, bool echoStderr, bool? useControlBlock = null)
    {
        var info = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-m", "interop_helpers.worker", "--host-pid", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            info.ArgumentList.Add(a);
        var control = useControlBlock ?? UseControlBlocks ? ControlBlock.Create() : null;
        if (control is not null)
        {
            info.ArgumentList.Add("--control-fd");
            info.ArgumentList.Add(control.FileDescriptor.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        var existing = Environment.GetEnvironmentVariable("PYTHONPATH");
        info.Environment["PYTHONPATH"] = string.IsNullOrEmpty(existing) ? helperDirectory : helperDirectory + Path.PathSeparator + existing;
        info.Environment["PYTHONUNBUFFERED"] = "1";
        if (WorkerTunables(info.Environment.TryGetValue("GLIBC_TUNABLES", out var tunables) ? tunables : null) is { Length: > 0 } glibc)
            info.Environment["GLIBC_TUNABLES"] = glibc;
        info.Environment.Remove("PYTHONNET_PYDLL");
        Process process;
        try
        {
            process = WorkerLauncher.Start(info);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException)
        {
            control?.Dispose();
            throw new WorkerStartException($"Cannot start the worker '{python}': {e.Message}. Fix: point WorkerOptions.Python at a CPython with NumPy (and PyTorch for tensors).", "", e);
        }
        var worker = new WorkerProcess(process, control) { EchoStderr = echoStderr };
        try
        {
            var hello = Task.Run(() => WireProtocol.Read(worker._fromWorker));
            if (!hello.Wait(startTimeout) || hello.Result is not { } message)
            {
                var ended = hello.IsCompleted; // before Kill: EOF after our own kill is a timeout, not an exit
                worker.Kill();
                process.WaitForExit(2000);
                if (ended && SafeExitCode(process) is > 128 and < 160 and var signal)
                {
                    // Killed (or crashed) by a signal during start-up: a crash of the worker, like one during a call.
                    throw new WorkerCrashedException(worker.ProcessId, signal, worker.StderrTail, "during start-up");
                }
                throw new WorkerStartException(
                    ended ? $"The worker '{python}' exited during start-up (code {SafeExitCode(process)})." :
                    $"The worker '{python}' did not answer within {startTimeout.TotalSeconds:0.#} s.", worker.StderrTail);
            }
            if (WireProtocol.Str(message, "op") != "hello")
                throw new WorkerProtocolException("the worker's first message must be its hello");
            worker.PythonVersion = WireProtocol.Str(message, "python");
            worker.TorchVersion = WireProtocol.OptionalStr(message, "torch");
            if (WireProtocol.Int(message, "pid") != worker.ProcessId)
                throw new WorkerProtocolException("the worker's hello names another process id");
            if (!(message.TryGetProperty("control", out var accepted) && accepted.ValueKind == JsonValueKind.True) && worker._control is { } unused)
            {
                // The worker could not map the block (its stderr says why): every frame goes over the pipes.
                worker._control = null;
                unused.Dispose();
            }
            return worker;
        }
        catch (AggregateException e) when (e.InnerException is WorkerProtocolException p)
        {
            worker.Dispose();
            throw new WorkerStartException("The worker's handshake broke the protocol: " + p.Message, worker.StderrTail, p);
        }
        catch
        {
            worker.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The worker's <c>GLIBC_TUNABLES</c>: <paramref name="existing"/> (the user's) plus a non-temporal threshold for
    /// memcpy of a quarter of the last-level cache, unless the user set one (Buffers/StreamingCopy.cs says why: the
    /// worker's copies into result regions of 16 MiB ran 1.7x faster with it). Other platforms ignore the variable.
    /// </summary>
    internal static string WorkerTunables(string? existing)
    {
        const string name = "glibc.cpu.x86_non_temporal_threshold";
        var threshold = Buffers.StreamingCopy.StreamingThreshold;
        if (threshold == long.MaxValue || (existing is not null && existing.Split(':').Any(t => t.StartsWith(name + "=", StringComparison.Ordinal))))
            return existing ?? "";
        var ours = name + "=" + threshold.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return string.IsNullOrEmpty(existing) ? ours : existing + ":" + ours;
    }

    private static int? SafeExitCode(Process p)
    {
        try
        {
            return p.HasExited ? p.ExitCode : null;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// Sends one request and returns its reply. <paramref name="prepare"/> runs under the gate and fills the
    /// request (it may write payloads into the request region it is given).
    /// </summary>
    /// <remarks>
    /// <paramref name="loadReserved"/>: the pool already counted this call in <see cref="Load"/> (<see cref="ReserveLoad"/>,
    /// under its lock), so that concurrent callers choosing a worker see it as busy at once.
    /// </remarks>
    public Reply Exchange(Func<RequestContext, JsonObject> prepare, TimeSpan? timeout, CancellationToken cancellationToken, bool loadReserved = false) =>
        Exchange(new JsonRequest(prepare), timeout, cancellationToken, loadReserved);

    /// <summary>Sends a request (its payloads written first, then its frame with id and housekeeping) and reads the reply.</summary>
    public Reply Exchange(OutgoingRequest request, TimeSpan? timeout, CancellationToken cancellationToken, bool loadReserved = false)
    {
        var held = HeldByThisThread; // inside Hold() (WorkerProcess.Hold.cs): the gate is already ours
        if (!Admit(loadReserved, takeGate: !held, cancellationToken))
            throw new WorkerGoneException(CrashInfo());
        try
        {
            ThrowIfDead();
            _sentRegion = null;
            var context = new RequestContext(this);
            request.WritePayloads(context);
            var id = ++_nextId;
            AddHousekeeping(context);
            byte[] frame;
            try
            {
                // The small calls of the hot path as a binary frame (WireBinary), everything else as JSON.
                frame = request.Frame(id, context);
            }
            catch (WorkerProtocolException)
            {
                UndoHousekeeping(context); // nothing was sent: the worker lives on and hears it all next time
                throw;
            }
            Volatile.Write(ref _awaiting, id);
            // No timer and no registration (nor their closures) for a call without a timeout or a cancellable token.
            var watch = timeout is { } t && t != Timeout.InfiniteTimeSpan || cancellationToken.CanBeCanceled ? new Watch(this, id) : null;
            using var timer = watch is not null && timeout is { } limit && limit != Timeout.InfiniteTimeSpan
                ? new Timer(static w => ((Watch)w!).Fire("timeout"), watch, limit, Timeout.InfiniteTimeSpan) : null;
            using var registration = watch is not null ? cancellationToken.Register(static w => ((Watch)w!).Fire("cancelled"), watch) : default;
            RawReply? raw;
            try
            {
                raw = _control is { } control ? ExchangeThroughBlock(control, frame) : ExchangeThroughPipes(frame);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                raw = null; // the pipe broke (the worker died), or Shutdown closed it
            }
            catch (WorkerProtocolException)
            {
                Kill();
                _dead = true;
                throw;
            }
            finally
            {
                // From here on a late timer callback (Timer.Dispose does not wait for one already queued) is ignored.
                lock (_abandonLock)
                    _awaiting = 0;
            }
            if (raw is not { } message)
            {
                _dead = true;
                throw DeathException(timeout, cancellationToken);
            }
            try
            {
                return ParseReply(message, id);
            }
            catch (ResultRegionGoneException)
            {
                // The worker answered, then died before this process opened the result region it announced.
                _dead = true;
                throw DeathException(timeout, cancellationToken);
            }
        }
        finally
        {
            Depart(releaseGate: !held);
        }
    }

    /// <summary>
    /// Counts the caller as load (unless the pool already did: <paramref name="loadReserved"/>) and as a user of the
    /// process, then takes the exchange gate when <paramref name="takeGate"/>; undoes both when the wait throws
    /// (cancellation). False, with nothing counted, when the worker's resources are already released.
    /// Every successful admission ends with one <see cref="Depart"/>.
    /// </summary>
    private bool Admit(bool loadReserved, bool takeGate, CancellationToken cancellationToken)
    {
        if (!loadReserved)
            Interlocked.Increment(ref _load);
        if (!TryEnter())
        {
            Interlocked.Decrement(ref _load);
            return false;
        }
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (takeGate)
                _gate.Wait(cancellationToken);
        }
        catch
        {
            Interlocked.Decrement(ref _load);
            Leave();
            throw;
        }
        return true;
    }

    /// <summary>Undoes an <see cref="Admit"/>: the gate (if this caller took it), the load, the user count.</summary>
    private void Depart(bool releaseGate)
    {
        if (releaseGate)
            _gate.Release();
        Interlocked.Decrement(ref _load);
        Leave();
    }

    private RawReply? ExchangeThroughPipes(byte[] frame)
    {
        _toWorker.Write(frame);
        _toWorker.Flush();
        return WireProtocol.ReadBody(_fromWorker) is { } body ? RawReply.Of(body) : null;
    }

    /// <summary>A reply whose envelope is checked: parsed JSON, or a binary frame whose layout is checked (WireBinary).</summary>
    private readonly record struct RawReply(JsonElement Json, BinaryReply? Binary)
    {
        public static RawReply Of(byte[] body) => WireBinary.IsBinary(body) ? new(default, WireBinary.ReadReply(body)) : new(WireProtocol.Parse(body), null);
    }

    /// <summary>
    /// The frame through the control block (over the pipe when it is larger than the block's area), the reply likewise;
    /// null when the worker exited or the call was abandoned (as EOF on the pipe).
    /// </summary>
    private RawReply? ExchangeThroughBlock(ControlBlock control, byte[] frame)
    {
        // A large frame is announced first and written after: the worker reads the pipe only once it is told to, and a
        // frame larger than the pipe's buffer blocks this write until it does.
        var onPipe = frame.Length - 4 > ControlBlock.AreaSize;
        var sequence = control.Post(frame.AsSpan(4), onPipe);
        if (onPipe)
        {
            _toWorker.Write(frame);
            _toWorker.Flush();
        }
        if (!control.WaitForReply(sequence, () => _abandonReason is not null || HasExited()))
            return null;
        var body = control.ReadReply() ?? WireProtocol.ReadBody(_fromWorker);
        return body is null ? null : RawReply.Of(body);
    }

    /// <summary>Counts a thread that uses the process or the regions; false once the last reference is gone.</summary>
    private bool TryEnter()
    {
        int current;
        do
        {
            current = Volatile.Read(ref _users);
            if (current <= 0)
                return false;
        }
        while (Interlocked.CompareExchange(ref _users, current + 1, current) != current);
        return true;
    }

    /// <summary>The last one out (the owner's Dispose or a caller still inside when it ran) releases the resources.</summary>
    private void Leave()
    {
        if (Interlocked.Decrement(ref _users) != 0)
            return;
        for (var slot = 0; slot < _requestRegions.Length; slot++)
        {
            _requestRegions[slot]?.Dispose();
            _requestRegions[slot] = null;
        }
        DisposeReturnedRequestRegions();
        _control?.Dispose();
        lock (_resultRegions)
        {
            foreach (var (id, region) in _resultRegions.ToArray())
            {
                if (!_resultLeases.ContainsKey(id))
                {
                    region.Dispose();
                    _resultRegions.Remove(id);
                }
            }
        }
        _process.Dispose();
    }

    private Exception DeathException(TimeSpan? timeout, CancellationToken cancellationToken)
    {
        switch (_abandonReason)
        {
            case "timeout":
                _process.WaitForExit(2000);
                return new WorkerTimeoutException(timeout!.Value, ProcessId);
            case "cancelled":
                _process.WaitForExit(2000);
                return new OperationCanceledException($"The call was cancelled; its worker (pid {ProcessId}) was stopped and will be replaced.", cancellationToken);
            case "disposed":
                return new ObjectDisposedException(nameof(WorkerProcess), "The isolated session was disposed while the call was running.");
        }
        if (!_process.WaitForExit(2000))
        {
            Kill();
            _process.WaitForExit(2000);
        }
        WaitForStderr();
        return _crash = new WorkerCrashedException(ProcessId, SafeExitCode(_process), StderrTail, "while a call was pending");
    }

    private void ThrowIfDead()
    {
        if (_dead || HasExited())
        {
            _dead = true;
            throw new WorkerGoneException(CrashInfo());
        }
    }

    /// <summary>The exception for calls and objects of this worker after it died.</summary>
    public WorkerCrashedException CrashInfo()
    {
        if (_crash is { } known)
            return known;
        if (!TryEnter())
            return _crash ?? new WorkerCrashedException(ProcessId, null, StderrTail); // released: Dispose recorded it unless it never ran
        try
        {
            if (HasExited())
                WaitForStderr();
            return _crash ??= new WorkerCrashedException(ProcessId, SafeExitCode(_process), StderrTail);
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>
    /// Lets the stderr reader reach EOF so the tail is complete, but not forever: a process the worker forked keeps the
    /// pipe open as long as it lives (WaitForExit() without a limit would wait for it).
    /// </summary>
    private void WaitForStderr()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            _process.WaitForExitAsync(limit.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            // a child of the worker holds its stderr: the tail has what arrived so far
        }
    }

    private void Abandon(string reason, long id)
    {
        lock (_abandonLock)
        {
            // Only the call that set the timer or token: not one that already has its reply, nor a later call.
            if (_awaiting != id)
                return;
            _abandonReason ??= reason;
            Kill();
            _control?.WakeHost(); // the waiter re-checks at once instead of at the end of its futex slice
        }
    }

    private void Kill()
    {
        try
        {
            _process.Kill();
        }
        catch (InvalidOperationException)
        {
            // already exited
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // already exited
        }
    }

    // ---- regions ---------------------------------------------------------------------------------------

    /// <summary>What a caller sends: its payloads go out first (<see cref="WritePayloads"/>), then its frame.</summary>
    internal abstract class OutgoingRequest
    {
        /// <summary>Writes the payloads (into <see cref="RequestContext.RequestRegion"/>), before the id and housekeeping are known.</summary>
        public abstract void WritePayloads(RequestContext context);

        /// <summary>The frame (length prefix included) with the request id and the housekeeping of <paramref name="context"/>.</summary>
        /// <exception cref="WorkerProtocolException">The request cannot be framed (too large); nothing was sent.</exception>
        public abstract byte[] Frame(long id, RequestContext context);
    }

    /// <summary>A request built as JSON nodes (sent as a binary frame when WireBinary carries it).</summary>
    private sealed class JsonRequest(Func<RequestContext, JsonObject> prepare) : OutgoingRequest
    {
        private JsonObject? _request;

        public override void WritePayloads(RequestContext context) => _request = prepare(context);

        public override byte[] Frame(long id, RequestContext context) => JsonFrame(_request!, id, context);
    }

    /// <summary>The frame of a JSON request with its id and housekeeping: binary when WireBinary carries it, else JSON.</summary>
    internal static byte[] JsonFrame(JsonObject request, long id, RequestContext context)
    {
        request["id"] = id;
        context.AddTo(request);
        return WireBinary.TryFrame(request) ?? WireProtocol.Frame(request);
    }

    /// <summary>The timer's and the token's state: which call they abandon.</summary>
    private sealed class Watch(WorkerProcess worker, long id)
    {
        public void Fire(string reason) => worker.Abandon(reason, id);
    }

    /// <summary>Per-request scratch: where payloads go and the housekeeping the request carries.</summary>
    internal sealed class RequestContext(WorkerProcess? worker)
    {
        private static readonly List<(long Id, long Fd, long Size)> s_noRegions = [];
        private static readonly List<int> s_noInts = [];
        private static readonly List<long> s_noLongs = [];
        private List<(long Id, long Fd, long Size)>? _newRegions;
        private List<int>? _dropped, _released;
        private List<long>? _handles;

        /// <summary>Request regions this request announces (id, fd, size).</summary>
        public List<(long Id, long Fd, long Size)> NewRegions => _newRegions ?? s_noRegions;

        /// <summary>Request regions the worker may unmap.</summary>
        public List<int> DroppedRegions => _dropped ?? s_noInts;

        /// <summary>Result regions this process no longer reads.</summary>
        public List<int> ReleasedResults => _released ?? s_noInts;

        /// <summary>Object handles this process released.</summary>
        public List<long> ReleasedHandles => _handles ?? s_noLongs;

        public void AddNewRegion(long id, long fd, long size) => (_newRegions ??= []).Add((id, fd, size));
        public void AddDropped(int id) => (_dropped ??= []).Add(id);
        public void AddReleased(int id) => (_released ??= []).Add(id);
        public void AddHandle(long handle) => (_handles ??= []).Add(handle);

        /// <summary>The request region, at least <paramref name="size"/> bytes (a new one is announced when needed).</summary>
        public SharedRegion RequestRegion(long size) =>
            (worker ?? throw new InvalidOperationException("this request context has no worker")).EnsureRequestRegion(size, this);

        /// <summary>Adds the housekeeping to a JSON request; empty lists are left out (the worker reads a missing list as empty).</summary>
        public void AddTo(JsonObject request)
        {
            if (_newRegions is { Count: > 0 } regions)
                request["regions"] = new JsonArray(regions.Select(r => (JsonNode)new JsonObject { ["id"] = r.Id, ["fd"] = r.Fd, ["size"] = r.Size }).ToArray());
            if (_dropped is { Count: > 0 } dropped)
                request["drop_regions"] = new JsonArray(dropped.Select(i => (JsonNode)i).ToArray());
            if (_released is { Count: > 0 } released)
                request["release_regions"] = new JsonArray(released.Select(i => (JsonNode)i).ToArray());
            if (_handles is { Count: > 0 } handles)
                request["release_handles"] = new JsonArray(handles.Select(h => (JsonNode)h).ToArray());
        }
    }

    /// <summary>Payloads up to this size alternate between two request regions (see _requestRegions).</summary>
    internal const long AlternateLimit = 4L << 20;

    /// <summary>Payloads of at least this many bytes wake a sleeping worker before they are copied (ControlBlock.WakeWorkerAhead).</summary>
    internal const long WakeAheadBytes = 64L << 10;

    private SharedRegion EnsureRequestRegion(long size, RequestContext context)
    {
        _requestSlot = size <= AlternateLimit ? _requestTurns++ & 1 : 0;
        if (_requestRegions[_requestSlot] is not { } region || region.Size < size)
        {
            ForgetRequestRegion(); // the next request that goes out tells the worker, even if this one fails to start
            if (TakeSpareRequestRegion(size) is { } spare)
            {
                region = spare; // the worker still maps it: nothing to announce
            }
            else
            {
                region = SharedRegion.CreateForRequests(++_nextRequestRegion, RequestCapacity(size));
                context.AddNewRegion(region.Id, region.FileDescriptor, region.Size);
                RequestRegionsCreated++;
            }
            _requestRegions[_requestSlot] = region;
        }
        _sentRegion = region;
        // The payload is copied next: a sleeping worker wakes meanwhile (after a new region's set-up, which can take
        // longer than the worker's spin).
        if (size >= WakeAheadBytes)
            _control?.WakeWorkerAhead();
        return region;
    }

    /// <summary>
    /// The size of a new request region for <paramref name="size"/> bytes: a power of two (at least 1 MiB) up to 64 MiB,
    /// so growing traffic reuses regions; above that the next multiple of 64 MiB, because the pages are reserved
    /// (fallocate) and doubling a 2 GiB argument's region would reserve 4 GiB of /dev/shm.
    /// </summary>
    internal static long RequestCapacity(long size)
    {
        const long step = 64L << 20;
        return size <= step ? Math.Max(1L << 20, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(size, 1)))
                            : checked((size + step - 1) / step * step);
    }

    /// <summary>How many request regions this worker's requests have made (tests check that returned ones are reused).</summary>
    internal int RequestRegionsCreated { get; private set; }

    /// <summary>Request regions kept for reuse after the results that held them are disposed (besides the two slots).</summary>
    internal const int MaxSpareRequestRegions = 2;

    /// <summary>The smallest returned request region of at least <paramref name="size"/> bytes (taken out of the queue), or null. Under the gate.</summary>
    private SharedRegion? TakeSpareRequestRegion(long size)
    {
        SharedRegion? best = null;
        for (var left = _returnedRequestRegions.Count; left > 0 && _returnedRequestRegions.TryDequeue(out var spare); left--)
        {
            if (spare.Size >= size && (best is null || spare.Size < best.Size))
                (best, spare) = (spare, best);
            if (spare is not null)
                _returnedRequestRegions.Enqueue(spare); // the others wait for a later request
        }
        return best;
    }

    /// <summary>
    /// A request region whose result lease ended (any thread, finalizers too): queued for reuse, or released when
    /// <see cref="MaxSpareRequestRegions"/> already wait (the next request tells the worker) or the worker is gone.
    /// </summary>
    private void ReturnRequestRegion(RegionLease lease)
    {
        var region = lease.Region;
        if (_returnedRequestRegions.Count >= MaxSpareRequestRegions)
        {
            _releasedRequestRegions.Enqueue(region.Id);
            region.Dispose(); // unmapped once the lease's own hold is released, right after this
            return;
        }
        _returnedRequestRegions.Enqueue(region);
        // Leave drains the queue once the last user is gone; a region queued after that drain is released here.
        if (Volatile.Read(ref _users) <= 0)
            DisposeReturnedRequestRegions();
    }

    private void DisposeReturnedRequestRegions()
    {
        while (_returnedRequestRegions.TryDequeue(out var returned))
            returned.Dispose();
    }

    private readonly List<int> _forgottenRegions = [];

    /// <summary>Forgets the region of the request being prepared (or both): the next request tells the worker.</summary>
    private void ForgetRequestRegion(bool both = false)
    {
        for (var slot = 0; slot < _requestRegions.Length; slot++)
        {
            if ((both || slot == _requestSlot) && _requestRegions[slot] is { } r)
            {
                _forgottenRegions.Add(r.Id);
                r.Dispose();
                _requestRegions[slot] = null;
            }
        }
    }

    private void AddHousekeeping(RequestContext context)
    {
        foreach (var id in _forgottenRegions)
            context.AddDropped(id);
        _forgottenRegions.Clear();
        while (_releasedRequestRegions.TryDequeue(out var released))
            context.AddDropped(released);
        while (_releasedResults.TryDequeue(out var id))
            context.AddReleased(id);
        while (_releasedHandles.TryDequeue(out var h))
            context.AddHandle(h);
    }

    private void UndoHousekeeping(RequestContext context)
    {
        if (context.NewRegions.Count > 0)
            ForgetRequestRegion(); // never announced: the next request makes and announces a new one
        _forgottenRegions.AddRange(context.DroppedRegions);
        foreach (var id in context.ReleasedResults)
            _releasedResults.Enqueue(id);
        foreach (var handle in context.ReleasedHandles)
            _releasedHandles.Enqueue(handle);
    }

    /// <summary>Queues a handle release for the next request (object handles are freed lazily).</summary>
    public void ReleaseHandle(long handle)
    {
        if (!_dead)
            _releasedHandles.Enqueue(handle);
    }

    private Reply ParseReply(RawReply raw, long id) => raw.Binary is { } binary ? ParseReply(binary, id) : ParseReply(raw.Json, id);

    /// <summary>A binary reply (always a successful call's): the same checks and bookkeeping as a JSON one.</summary>
    private Reply ParseReply(BinaryReply message, long id)
    {
        try
        {
            return ParseBinaryReply(message, id);
        }
        catch (WorkerProtocolException)
        {
            // Every binary reply is a successful call's: one that lies is a breach, and the worker is replaced.
            Kill();
            _dead = true;
            throw;
        }
    }

    private Reply ParseBinaryReply(BinaryReply message, long id)
    {
        if (message.Id != id)
            throw new WorkerProtocolException($"reply id {message.Id} does not match request id {id}");
        foreach (var retained in message.Retained)
            ApplyRetained(retained);
        foreach (var closed in message.Closed)
        {
            if (closed is >= int.MinValue and <= int.MaxValue)
                CloseResultRegion((int)closed);
        }
        foreach (var (rid, pid, fd, size) in message.Regions)
        {
            OpenResultRegion(InRange(rid, "id", 1, int.MaxValue), InRange(pid, "pid", 1, int.MaxValue),
                             InRange(fd, "fd", 0, int.MaxValue), InRange(size, "size", 1, 1L << 40));
        }
        var lease = LeaseFor(message.ResultRegions.Length, message.ResultRegions.Length == 1 && message.ResultRegions[0] is >= int.MinValue and <= int.MaxValue ? (int)message.ResultRegions[0] : -1,
                             message.ResultInRequest);
        try
        {
            return new Reply(WireValue.FromBinary(message.Value, lease), lease);
        }
        catch
        {
            lease?.Dispose();
            throw;
        }
    }

    private static long InRange(long value, string name, long min, long max) =>
        value >= min && value <= max ? value : throw new WorkerProtocolException($"field '{name}' must be an integer in {min}..{max}");

    private Reply ParseReply(JsonElement message, long id)
    {
        var replyId = WireProtocol.Int(message, "id", -1);
        var ok = WireProtocol.Bool(message, "ok");
        if (!ok)
        {
            // A call that raised still reports the inputs Python kept and the result regions the worker closed.
            ApplyRetainedAndClosed(message);
            var error = WireProtocol.Obj(message, "error");
            var isProtocol = message.TryGetProperty("protocol", out var p) && p.ValueKind == JsonValueKind.True;
            if (isProtocol)
            {
                // The worker may have refused the request before mapping a region it announced: start afresh.
                ForgetRequestRegion(both: true);
                throw new WorkerProtocolException("the worker rejected the request: " + WireProtocol.Str(error, "message"));
            }
            if (replyId != id)
                throw new WorkerProtocolException($"reply id {replyId} does not match request id {id}");
            throw new PythonErrorException(WireProtocol.Str(error, "type").Replace("builtins.", "", StringComparison.Ordinal),
                                           WireProtocol.Str(error, "message"), WireProtocol.Str(error, "traceback"));
        }
        if (replyId != id)
            throw new WorkerProtocolException($"reply id {replyId} does not match request id {id}");
        ApplyRetainedAndClosed(message);
        foreach (var region in WireProtocol.OptionalList(message, "regions"))
        {
            var rid = WireProtocol.Int(region, "id", 1, int.MaxValue);
            var pid = WireProtocol.Int(region, "pid", 1, int.MaxValue);
            OpenResultRegion(rid, pid, WireProtocol.Int(region, "fd", 0, int.MaxValue), WireProtocol.Int(region, "size", 1, 1L << 40));
        }
        var results = WireProtocol.OptionalList(message, "result_regions").ToArray();
        var inRequest = message.TryGetProperty("result_in_request", out var flag) && flag.ValueKind == JsonValueKind.True;
        var lease = LeaseFor(results.Length, results.Length == 1 && results[0].ValueKind == JsonValueKind.Number && results[0].TryGetInt32(out var x) ? x : -1, inRequest);
        try
        {
            var value = WireValue.Decode(WireProtocol.Obj(message, "value"), lease, 0);
            return new Reply(value, lease);
        }
        catch
        {
            lease?.Dispose();
            throw;
        }
    }

    /// <summary>Maps a result region a reply announces (checked: this worker's, not known yet).</summary>
    private void OpenResultRegion(long regionId, long processId, long fd, long size)
    {
        var rid = (int)regionId;
        var pid = (int)processId;
        bool known;
        lock (_resultRegions) // leases return on other threads (and finalizers) and change the map under this lock
            known = _resultRegions.ContainsKey(rid);
        if (pid != ProcessId || known)
            throw new WorkerProtocolException($"result region {rid} is announced twice or by another process");
        SharedRegion opened;
        try
        {
            opened = SharedRegion.OpenFromWorker(rid, pid, (int)fd, size);
        }
        catch (WorkerProtocolException e) when (_process.WaitForExit(500))
        {
            // Its descriptors closed with it: a worker killed right after it answered, not a breach of the protocol.
            throw new ResultRegionGoneException(e.Message);
        }
        lock (_resultRegions)
            _resultRegions[rid] = opened;
    }

    /// <summary>
    /// The lease on the one result region a reply uses (<paramref name="count"/> of them listed), or null when none.
    /// <paramref name="inRequest"/>: the worker answered inside the request's own region (an argument returned as it came,
    /// or a contiguous view of it). That region then leaves its slot and belongs to the result until the lease ends (see
    /// ReturnRequestRegion); the next request takes another one.
    /// </summary>
    private RegionLease? LeaseFor(int count, int rid, bool inRequest)
    {
        RegionLease? lease = null;
        if (count > 1)
            throw new WorkerProtocolException("a reply may use at most one result region");
        if (inRequest)
        {
            if (count != 1 || _sentRegion is not { } sent || sent.Id != rid || !ReferenceEquals(_requestRegions[_requestSlot], sent))
            {
                // The two sides disagree on who owns a region (JSON replies as binary ones): the worker is replaced.
                Kill();
                _dead = true;
                throw new WorkerProtocolException($"reply answers inside request region {rid}, which its request did not use");
            }
            _requestRegions[_requestSlot] = null;
            _sentRegion = null;
            return new RegionLease(sent, ReturnRequestRegion);
        }
        if (count == 1)
        {
            SharedRegion? region;
            lock (_resultRegions)
            {
                if (!_resultRegions.TryGetValue(rid, out region))
                    throw new WorkerProtocolException($"reply uses result region {rid}, which was never announced");
                _resultLeases[rid] = _resultLeases.GetValueOrDefault(rid) + 1;
            }
            lease = new RegionLease(region, ReturnLease);
        }
        return lease;
    }

    private void ApplyRetainedAndClosed(JsonElement message)
    {
        {
            foreach (var retained in WireProtocol.OptionalList(message, "retained"))
            {
                if (retained.ValueKind == JsonValueKind.Number && retained.TryGetInt32(out var kept))
                    ApplyRetained(kept);
            }
        }
        {
            foreach (var closed in WireProtocol.OptionalList(message, "closed"))
            {
                if (closed.ValueKind == JsonValueKind.Number && closed.TryGetInt32(out var cid))
                    CloseResultRegion(cid);
            }
        }
    }

    private void ApplyRetained(long kept)
    {
        for (var slot = 0; slot < _requestRegions.Length; slot++)
        {
            if (_requestRegions[slot] is { } r && kept == r.Id)
            {
                // Python kept views of the inputs: this region now belongs to them; the next call gets a new one.
                r.Dispose();
                _requestRegions[slot] = null;
            }
        }
    }

    private void ReturnLease(RegionLease lease)
    {
        var id = lease.Region.Id;
        lock (_resultRegions)
        {
            var left = _resultLeases.GetValueOrDefault(id) - 1;
            if (left > 0)
            {
                _resultLeases[id] = left;
                return;
            }
            _resultLeases.Remove(id);
            if (_closedByWorker.Remove(id) || _dead)
            {
                _resultRegions.Remove(id);
                lease.Region.Dispose();
                return;
            }
        }
        _releasedResults.Enqueue(id);
    }

    private void CloseResultRegion(int id)
    {
        lock (_resultRegions)
        {
            if (!_resultRegions.TryGetValue(id, out var region))
                return;
            if (_resultLeases.ContainsKey(id))
            {
                _closedByWorker.Add(id);
                return;
            }
            _resultRegions.Remove(id);
            region.Dispose();
        }
    }

    /// <summary>Asks the worker to exit, then waits for it (killing it after <paramref name="grace"/>).</summary>
    public void Shutdown(TimeSpan grace)
    {
        var asked = false;
        if (!_dead && !HasExited() && _gate.Wait(grace))
        {
            try
            {
                var frame = WireProtocol.Frame(new JsonObject { ["id"] = ++_nextId, ["op"] = "shutdown" });
                if (_control is { } control)
                    control.Post(frame.AsSpan(4), onPipe: false);
                else
                    _toWorker.Write(frame);
                asked = true;
            }
            catch (IOException)
            {
                // it is already gone
            }
            finally
            {
                // Before a caller queued on the gate gets in: it must see a dead worker, not a closed pipe.
                _dead = true;
                _toWorker.Close();
                _gate.Release();
            }
        }
        // A worker still busy after the grace period was never asked to exit: waiting longer would not help.
        if (!asked || !_process.WaitForExit((int)grace.TotalMilliseconds))
            Kill();
    }

    /// <summary>
    /// Stops the worker (asking first) and drops the owner's reference: the pipes, the Process object and the regions
    /// that no result still uses are released now, or by the last caller still inside <see cref="Exchange(OutgoingRequest, TimeSpan?, CancellationToken, bool)"/>.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposedFlag, 1) != 0)
            return;
        if (!_dead && !HasExited())
        {
            _abandonReason ??= "disposed";
            Shutdown(TimeSpan.FromSeconds(2));
        }
        _dead = true;
        _process.WaitForExit(2000);
        _ = CrashInfo();
        Leave();
    }

    private int _disposedFlag;

    /// <summary>A result region of a reply could not be opened because the worker is gone (a crash, not a protocol breach).</summary>
    private sealed class ResultRegionGoneException(string message) : Exception(message);

    /// <summary>The worker was already gone before the request was sent (so a call on a path may go to a fresh worker).</summary>
    internal sealed class WorkerGoneException(WorkerCrashedException crash) : Exception(crash.Message, crash)
    {
        public WorkerCrashedException Crash { get; } = crash;
    }

    /// <summary>A decoded reply: the value and the lease on its result region (if it carried arrays).</summary>
    internal sealed record Reply(WireValue Value, RegionLease? Lease);
}

/// <summary>Starts worker processes from one thread that lives as long as the process (see the design notes).</summary>
internal static class WorkerLauncher
{
    private static readonly BlockingCollection<(ProcessStartInfo Info, TaskCompletionSource<Process> Done)> s_queue = [];
    private static readonly Lazy<Thread> s_thread = new(() =>
    {
        var thread = new Thread(() =>
        {
            foreach (var (info, done) in s_queue.GetConsumingEnumerable())
            {
                try
                {
                    done.SetResult(Process.Start(info) ?? throw new IOException("Process.Start returned no process"));
                }
                catch (Exception e)
                {
                    done.SetException(e);
                }
            }
        })
        { IsBackground = true, Name = "Interop worker launcher" };
        thread.Start();
        return thread;
    });

    public static Process Start(ProcessStartInfo info)
    {
        _ = s_thread.Value;
        var done = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        s_queue.Add((info, done));
        return done.Task.GetAwaiter().GetResult(); // rethrows the launcher's exception itself, not an AggregateException
    }
}
