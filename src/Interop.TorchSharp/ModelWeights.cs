// Design notes: model weights between a Python session (in-process or isolated) and TorchSharp, in memory.
// - The Python side is interop_helpers.model_state: it opens the source or target once (a handle that stays in
//   Python), describes it (names, dtype-table names, shapes, byte sizes), and moves entries in batches as RAW BYTES
//   (1-d uint8 tensors over each tensor's C-order memory). Every dtype travels the same way, so bfloat16, which NumPy
//   lacks, crosses bit for bit with its dtype tag from the description, and nothing is converted unless asked.
// - All checks (PyTorch's load_state_dict rules: missing / unexpected keys, shape and dtype mismatches) run on the
//   descriptions before any byte moves, so a refused load changes nothing.
// - Memory: one batch at a time (ModelWeightsOptions.BatchBytes, or the largest tensor if larger). Python -> TorchSharp
//   module in an isolated session (LoadWeightsFrom, LoadCheckpoint): ONE copy. The worker pins each batch (pin_batch: the
//   tensors' own C-order memory, a copy only for a non-contiguous or non-CPU entry) and tells addresses and sizes; this
//   process checks them against what it computed from shapes and dtypes and reads the bytes straight into the module's
//   tensors (WorkerMemory.TryRead, process_vm_readv), holding the worker meanwhile (WorkerProcess.Hold) so that no other
//   caller's code runs there (a tensor described a second time is moved to huge pages by the worker, which makes the
//   kernel's copy about twice as fast: model_state._HugePages). Where the kernel refuses direct reads (EPERM / ENOSYS), the same load takes the
//   shared-region route: the worker copies the batch into a pooled shared region, the bytes are wrapped in place here
//   (TorchSharpTensors.WrapMemory, no copy) and copied into the module's tensors (two copies in all). ReadStateDict keeps
//   the region route (its tensors lie over the region: one copy, made by the worker). In-process: the NumPy buffer over
//   the Python tensor is wrapped (no copy) and copied once.
//   TorchSharp -> Python: each tensor's memory is the call argument (no copy here); the session copies it once
//   (isolated: into its request region in /dev/shm) and Python copy_'s it into the module.
using Interop.Buffers;
using Interop.DTypes;
using Interop.Errors;
using Interop.Isolated;
using System.Text.Json;
using Interop.Sessions;
using TorchSharp;

namespace Interop.TorchSharp;

/// <summary>
/// Moves model weights (a <c>state_dict</c>: parameters and buffers, named as PyTorch names them) between Python and
/// TorchSharp, in memory, over any <see cref="PythonSession"/>. See docs/models.md.
/// </summary>
public static class ModelWeights
{
    private const string HelperModule = "interop_helpers.model_state";
    private const string SharedMemoryPath = "/dev/shm";

    /// <summary>For tests: replaces the free-space probe of /dev/shm (bytes).</summary>
    internal static Func<long>? SharedMemoryProbe { get; set; }

    // ---- Python -> TorchSharp -------------------------------------------------------------------

    /// <summary>
    /// Copies the weights of a Python object into <paramref name="module"/> (PyTorch's <c>load_state_dict</c> rules):
    /// <paramref name="source"/> is an <c>nn.Module</c> (its <c>state_dict()</c>) or a mapping of names to tensors.
    /// Strict by default; every entry is checked (names, shapes, dtypes) before anything is copied.
    /// </summary>
    /// <exception cref="StateDictMismatchException">Missing or unexpected keys (strict), or shape or dtype mismatches; nothing was copied.</exception>
    /// <exception cref="SharedMemoryTooSmallException">An isolated session's /dev/shm cannot hold the largest tensor.</exception>
    /// <exception cref="Errors.PythonErrorException">The source is neither a module nor a mapping of tensors, or holds a dtype the table lacks (the message names the entry).</exception>
    public static WeightLoadResult LoadWeightsFrom(this torch.nn.Module module, PythonRef source, ModelWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return LoadCore(module, source.Session, source, options);
    }

    /// <summary>
    /// Like <see cref="LoadWeightsFrom(torch.nn.Module, PythonRef, ModelWeightsOptions?)"/> from a checkpoint file that
    /// Python's <c>torch.load</c> reads (<c>weights_only=True</c>, memory-mapped where PyTorch can, so a multi-GB file is
    /// not read into memory at once), in <paramref name="session"/>: a state dict, a module, or a dict that nests the state
    /// dict under <c>state_dict</c>, <c>model_state_dict</c> or <c>model</c>.
    /// </summary>
    /// <exception cref="StateDictMismatchException">Missing or unexpected keys (strict), or shape or dtype mismatches; nothing was copied.</exception>
    /// <exception cref="SharedMemoryTooSmallException">An isolated session's /dev/shm cannot hold the largest tensor.</exception>
    /// <exception cref="Errors.PythonErrorException">The file cannot be read by <c>torch.load</c>, or holds no state dict.</exception>
    public static WeightLoadResult LoadCheckpoint(this torch.nn.Module module, PythonSession session, string checkpointPath, ModelWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentException.ThrowIfNullOrEmpty(checkpointPath);
        return LoadCore(module, session, checkpointPath, options);
    }

    /// <summary>
    /// The state dict of a Python <c>nn.Module</c> or mapping as TorchSharp tensors named as PyTorch names them, in
    /// PyTorch's order, each of its PyTorch dtype (bfloat16 included, bit for bit). Isolated sessions: <b>no copy</b> here,
    /// each tensor lies over the worker's shared result region (copied there once by the worker) and keeps it mapped until
    /// disposed. In-process: one copy. The caller owns (disposes) the tensors.
    /// </summary>
    /// <exception cref="SharedMemoryTooSmallException">An isolated session's /dev/shm cannot hold the largest tensor.</exception>
    public static Dictionary<string, torch.Tensor> ReadStateDict(PythonRef source, ModelWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return ReadCore(source.Session, source, options);
    }

    /// <summary>
    /// <see cref="ReadStateDict(PythonRef, ModelWeightsOptions?)"/> of a checkpoint file that Python's <c>torch.load</c>
    /// reads (see <see cref="LoadCheckpoint"/>).
    /// </summary>
    public static Dictionary<string, torch.Tensor> ReadCheckpoint(PythonSession session, string checkpointPath, ModelWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentException.ThrowIfNullOrEmpty(checkpointPath);
        return ReadCore(session, checkpointPath, options);
    }

    // ---- TorchSharp -> Python -------------------------------------------------------------------

    /// <summary>
    /// Copies <paramref name="module"/>'s weights (its <c>state_dict()</c>) into a Python <c>nn.Module</c> (or a mapping
    /// of names to tensors), under PyTorch's <c>load_state_dict</c> rules (see <see cref="ModelWeightsOptions"/>); the
    /// Python tensors are written in place (<c>copy_</c> under <c>torch.no_grad()</c>), so optimisers and views that hold
    /// them see the new values.
    /// </summary>
    /// <exception cref="StateDictMismatchException">Missing or unexpected keys (strict), or shape or dtype mismatches; nothing was copied.</exception>
    /// <exception cref="SharedMemoryTooSmallException">An isolated session's /dev/shm cannot hold the largest tensor.</exception>
    /// <exception cref="NotSupportedException">A tensor of 2 GiB or more on the shared-region route (a call argument is at most 2 GiB; the direct route has no such limit).</exception>
    public static WeightLoadResult CopyWeightsTo(this torch.nn.Module module, PythonRef target, ModelWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        return CopyStateDictTo(module.state_dict(), target, options);
    }

    /// <summary>Like <see cref="CopyWeightsTo"/> from a TorchSharp state dict (names to tensors; any device, any layout).</summary>
    public static WeightLoadResult CopyStateDictTo(IReadOnlyDictionary<string, torch.Tensor> state, PythonRef target, ModelWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(target);
        options = Check(options);
        TorchSharpSupport.EnsureLoadable();
        var session = target.Session;
        using var helpers = Helpers(session);
        // Isolated: hold the target's worker from the open on, so that the addresses it describes stay what they were
        // until the transfer ends (no other caller's code runs there meanwhile; see LoadCore).
        var worker = (target as IsolatedRef)?.Target.Worker;
        var hold = worker?.Hold();
        try
        {
            using var opened = Invoke(helpers, "open_target_described", [target, HugePages && session is IsolatedSession], options);
            var (handle, described, places) = ReadOpened(opened, "open_target_described", "[target, description, places]", repin: true, ref worker, ref hold);
            using var handleOwner = handle;
            var destination = described.ToDictionary(e => e.Name, StringComparer.Ordinal);
            var incoming = state.Select(kv => new StateEntry(kv.Key, TorchSharpTensors.DTypeOf(kv.Value.dtype), kv.Value.shape,
                                                            checked(kv.Value.numel() * kv.Value.ElementSize))).ToList();
            var (pairs, missing, unexpected) = Match(incoming, destination, options);
            var sources = pairs.Select(p => p.Source).ToList();
            var progress = new ProgressCounter(pairs.Count, sources.Sum(e => e.Bytes), options.Progress);
            if (worker is not null && TryWriteDirect(helpers, handle, worker, pairs, places, state, options, progress))
                return new WeightLoadResult(missing, unexpected, progress.Done, progress.Bytes) { Route = WeightRoute.DirectCopy };
            using var write = Function(helpers, "write_batch");
            foreach (var batch in Plan(session, sources, options))
            {
                var prepared = new List<torch.Tensor>(batch.Count);
                try
                {
                    var blobs = new List<object?>(batch.Count);
                    foreach (var entry in batch)
                    {
                        if (entry.Bytes > int.MaxValue)
                            throw new NotSupportedException($"'{entry.Name}' holds {entry.Bytes:N0} bytes; on this route a tensor travels to Python as one call argument, at most 2 GiB. " +
                                                            "Fix: split the tensor, or save that entry with torch.save from .NET and load it in Python.");
                        var tensor = state[entry.Name].detach().cpu().contiguous();
                        prepared.Add(tensor);
                        var memory = new NativeMemoryManager(entry.Bytes == 0 ? 0 : tensor.DataAddress(), (int)entry.Bytes).Memory;
                        blobs.Add(TensorArgument.Create<byte>(memory, entry.Bytes));
                    }
                    object?[] args =
                    [
                        handle,
                        batch.Select(e => (object?)e.Name).ToList(),
                        batch.Select(e => (object?)e.DType.Name).ToList(),
                        batch.Select(e => (object?)e.Shape.Select(d => (object?)d).ToList()).ToList(),
                        blobs,
                        options.ConvertDTypes,
                    ];
                    using var _ = write.Call(args, Call(options));
                }
                finally
                {
                    foreach (var t in prepared)
                        t.Dispose();
                }
                progress.Add(batch);
            }
            return new WeightLoadResult(missing, unexpected, progress.Done, progress.Bytes) { Route = worker is null ? WeightRoute.InProcess : WeightRoute.SharedRegion };
        }
        finally
        {
            hold?.Dispose();
        }
    }

    /// <summary>
    /// The one-copy route TorchSharp -> Python of isolated sessions: the worker told, when it described the target
    /// (open_target_described), the address of each entry that is a contiguous CPU tensor; entries of the same dtype here
    /// are written there. For the others the worker checks them per batch and tells where their bytes go (pin_targets: a
    /// staging tensor for another dtype, device or layout). This process writes with process_vm_writev from its own C-order
    /// CPU tensors, and the worker finishes the batch (commit_batch: copy_ of the staged entries, version counters of the
    /// ones written in place). False, with nothing written, when the kernel refuses direct writes: the caller takes the
    /// shared-region route. The caller holds the worker.
    /// </summary>
    private static bool TryWriteDirect(PythonRef helpers, PythonRef handle, WorkerProcess worker, List<(StateEntry Source, StateEntry Destination)> pairs,
                                       Place?[] places, IReadOnlyDictionary<string, torch.Tensor> state, ModelWeightsOptions options, ProgressCounter progress)
    {
        if (pairs.Count == 0)
            return true;
        using var pin = Function(helpers, "pin_targets");
        using var commit = Function(helpers, "commit_batch");
        var first = true;
        var destinations = pairs.ToDictionary(p => p.Source.Name, p => p.Destination, StringComparer.Ordinal);
        foreach (var batch in Batches(pairs.Select(p => p.Source).ToList(), options.BatchBytes))
        {
            var prepared = new List<torch.Tensor>(batch.Count);
            try
            {
                // In place where the worker gave an address and the dtypes agree; the others are pinned now, in one call.
                var inPlace = batch.Where(e => places[destinations[e.Name].Index] is not null && destinations[e.Name].DType == e.DType).ToList();
                var addresses = new Dictionary<string, long>(batch.Count, StringComparer.Ordinal);
                foreach (var entry in inPlace)
                    addresses.Add(entry.Name, AddressOf(places[destinations[entry.Name].Index], entry, "open_target_described"));
                var staged = batch.Where(e => !addresses.ContainsKey(e.Name)).ToList();
                if (staged.Count > 0)
                {
                    object?[] args =
                    [
                        handle,
                        staged.Select(e => (object?)e.Name).ToList(),
                        staged.Select(e => (object?)e.DType.Name).ToList(),
                        staged.Select(e => (object?)e.Shape.Select(d => (object?)d).ToList()).ToList(),
                        options.ConvertDTypes,
                    ];
                    using var text = pin.Call(args, Call(options));
                    var pinned = ParsePlaces(text, staged.Count, "pin_targets", nullable: false);
                    for (var i = 0; i < staged.Count; i++)
                        addresses.Add(staged[i].Name, AddressOf(pinned[i], staged[i], "pin_targets"));
                }
                var segments = new List<WorkerMemory.Segment>(batch.Count);
                foreach (var entry in batch)
                {
                    if (entry.Bytes == 0)
                        continue;
                    BeforeDirectCopy?.Invoke(worker.ProcessId, entry.Name);
                    var tensor = state[entry.Name];
                    if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
                    {
                        tensor = tensor.detach().cpu().contiguous(); // C-order CPU bytes of its values: a copy of this entry
                        prepared.Add(tensor);
                    }
                    if (checked(tensor.numel() * tensor.ElementSize) != entry.Bytes)
                        throw new InvalidOperationException($"'{entry.Name}' changed size during the transfer.");
                    segments.Add(new WorkerMemory.Segment(addresses[entry.Name], entry.Bytes, tensor.DataAddress(), $"'{entry.Name}'"));
                }
                if (SimulateDirectRefusal || !WorkerMemory.TryWrite(worker, segments))
                {
                    if (!first)
                        throw new WorkerMemoryException(batch[0].Name, worker.ProcessId, 0, batch.Sum(e => e.Bytes), 0, 1, "direct writes were refused in the middle of a transfer (EPERM)");
                    return false;
                }
                first = false;
                if (!worker.IsAlive)
                    throw worker.DiedDuringDirectCopy();
                using var _ = commit.Call([handle, inPlace.Select(e => (object?)destinations[e.Name].Index).ToList()], Call(options));
            }
            finally
            {
                foreach (var t in prepared)
                    t.Dispose();
            }
            progress.Add(batch);
        }
        return true;
    }

    /// <summary>
    /// The address of one [address, nbytes] row of open_described, pin_batch or pin_targets, checked: nbytes must be what
    /// this process computed for the entry (shape x dtype), never the other way round.
    /// </summary>
    private static long AddressOf(Place? place, StateEntry entry, string function)
    {
        if (place is not { } row)
            throw new WorkerProtocolException($"{function}: entry '{entry.Name}' must be [address, nbytes] (64-bit integers)");
        if (row.Length != entry.Bytes)
            throw new WorkerProtocolException($"{function}: entry '{entry.Name}' ({entry.DType.Name} [{string.Join(", ", entry.Shape)}]) holds {entry.Bytes:N0} bytes, the worker described {row.Length:N0}");
        return row.Address;
    }

    // ---- the two directions' common parts -------------------------------------------------------

    private static WeightLoadResult LoadCore(torch.nn.Module module, PythonSession session, object source, ModelWeightsOptions? options)
    {
        ArgumentNullException.ThrowIfNull(module);
        options = Check(options);
        TorchSharpSupport.EnsureLoadable();
        // This side's description runs on another thread while Python opens and describes the source (one call).
        var local = Task.Run(() =>
        {
            var state = module.state_dict();
            var targets = new Dictionary<string, LocalTensor>(state.Count, StringComparer.Ordinal);
            var destination = new Dictionary<string, StateEntry>(state.Count, StringComparer.Ordinal);
            foreach (var (name, tensor) in state)
            {
                var entry = new StateEntry(name, TorchSharpTensors.DTypeOf(tensor.dtype), tensor.shape, checked(tensor.numel() * tensor.ElementSize));
                destination.Add(name, entry);
                // Each tensor's native state is read once per transfer, here (the copy loop reads these fields only).
                targets.Add(name, new LocalTensor(tensor, entry, tensor.device_type == DeviceType.CPU && tensor.is_contiguous() ? tensor.DataAddress() : 0));
            }
            return (targets, destination);
        });
        // Isolated: the source lives in one worker; hold it for the transfer (from the open on when the source is a handle,
        // else from the first reply on), so no other caller's code runs there while its memory is read (direct route) or
        // between batches (either route).
        var worker = (source as IsolatedRef)?.Target.Worker;
        var hold = worker?.Hold();
        try
        {
            Dictionary<string, LocalTensor> targets;
            Dictionary<string, StateEntry> destination;
            PythonValue opened;
            try
            {
                using var helpersForOpen = Helpers(session);
                opened = Invoke(helpersForOpen, "open_described", [source, HugePages && session is IsolatedSession], options);
            }
            finally
            {
                (targets, destination) = local.GetAwaiter().GetResult();
            }
            using var _ = opened;
            using var helpers = Helpers(session);
            // Not re-pinned for a checkpoint: its state was just loaded and no other caller can reach its tensors.
            var (handle, entries, places) = ReadOpened(opened, "open_described", "[state, description, places]", repin: source is PythonRef, ref worker, ref hold);
            using var handleOwner = handle;
            var (pairs, missing, unexpected) = Match(entries, destination, options);
            var progress = new ProgressCounter(pairs.Count, pairs.Sum(p => p.Source.Bytes), options.Progress);
            var sources = pairs.Select(p => p.Source).ToList();
            if (worker is not null && TryLoadDirect(helpers, handle, worker, sources, places, targets, options, progress))
                return new WeightLoadResult(missing, unexpected, progress.Done, progress.Bytes) { Route = WeightRoute.DirectCopy };
            foreach (var batch in Plan(session, sources, options))
            {
                ReadBatch(helpers, handle, batch, options, keep: false, (entry, view) =>
                {
                    CopyInto(targets[entry.Name].Tensor, view, entry);
                    view.Dispose();
                });
                progress.Add(batch);
            }
            return new WeightLoadResult(missing, unexpected, progress.Done, progress.Bytes)
            {
                Route = worker is null ? WeightRoute.InProcess : WeightRoute.SharedRegion,
            };
        }
        finally
        {
            hold?.Dispose();
        }
    }

    /// <summary>
    /// A destination tensor of this process with what the copy needs of it, read once: its description and, when it is a
    /// contiguous CPU tensor, its data address (else 0).
    /// </summary>
    private readonly record struct LocalTensor(torch.Tensor Tensor, StateEntry Entry, nint PlainAddress);

    /// <summary>
    /// Whether the worker is asked to back memory that is copied repeatedly with huge pages (model_state._HugePages): only
    /// where the direct route can run (Linux), and never when the tests force the fallback.
    /// </summary>
    private static bool HugePages => OperatingSystem.IsLinux() && !SimulateDirectRefusal;

    /// <summary>
    /// The one-copy route of isolated sessions: the worker told the address of each entry that already lies in C-order
    /// CPU memory (open_described) and pins the others per batch (pin_batch: a contiguous copy, kept alive until the next
    /// batch); this process reads them with process_vm_readv straight into the destination tensors (or, for a destination
    /// that is not a contiguous CPU tensor of the source's dtype, into a temporary tensor, then copy_). False, with nothing
    /// copied, when the kernel refuses direct reads of the worker (ptrace_scope 2/3, seccomp, not Linux): the caller takes
    /// the shared-region route. The caller holds the worker.
    /// </summary>
    private static bool TryLoadDirect(PythonRef helpers, PythonRef handle, WorkerProcess worker, List<StateEntry> entries, Place?[] places,
                                      Dictionary<string, LocalTensor> targets, ModelWeightsOptions options, ProgressCounter progress)
    {
        if (entries.Count == 0)
            return true;
        using var pin = Function(helpers, "pin_batch");
        var first = true;
        foreach (var batch in Batches(entries, options.BatchBytes))
        {
            // Entries without a place (not yet contiguous CPU memory) are pinned now, in one call for the batch.
            var unpinned = batch.Where(e => e.Bytes > 0 && places[e.Index] is null).ToList();
            if (unpinned.Count > 0)
            {
                using var text = pin.Call([handle, unpinned.Select(e => (object?)e.Index).ToList()], Call(options));
                var pinned = ParsePlaces(text, unpinned.Count, "pin_batch", nullable: false);
                for (var i = 0; i < unpinned.Count; i++)
                    places[unpinned[i].Index] = pinned[i];
            }
            var segments = new List<WorkerMemory.Segment>(batch.Count);
            var staged = new List<(torch.Tensor Staging, torch.Tensor Destination)>();
            try
            {
                for (var i = 0; i < batch.Count; i++)
                {
                    var entry = batch[i];
                    if (entry.Bytes == 0)
                        continue;
                    // The sizes are this process's own: entry.Bytes comes from the shape and dtype (Describe), which matched the destination.
                    var address = AddressOf(places[entry.Index], entry, "pin_batch");
                    BeforeDirectCopy?.Invoke(worker.ProcessId, entry.Name);
                    segments.Add(new WorkerMemory.Segment(address, entry.Bytes, DestinationOf(entry, targets[entry.Name], staged), $"'{entry.Name}'"));
                }
                if (SimulateDirectRefusal || !WorkerMemory.TryRead(worker, segments))
                {
                    if (!first)
                        throw new WorkerMemoryException(batch[0].Name, worker.ProcessId, 0, batch.Sum(e => e.Bytes), 0, 1, "direct reads were refused in the middle of a transfer (EPERM)");
                    return false;
                }
                first = false;
                if (!worker.IsAlive)
                    throw worker.DiedDuringDirectCopy(); // the reads ended while the process went away: their data cannot be trusted
                using (torch.no_grad())
                {
                    foreach (var (staging, destination) in staged)
                        destination.copy_(staging);
                }
            }
            finally
            {
                foreach (var (staging, _) in staged)
                    staging.Dispose();
            }
            progress.Add(batch);
        }
        return true;
    }

    /// <summary>
    /// Where an entry's bytes go: the destination tensor's own memory when it is a contiguous CPU tensor of the entry's
    /// dtype; else a temporary of the entry's dtype and shape (added to <paramref name="staged"/>, copy_'d after the read:
    /// another dtype with ConvertDTypes, another device or layout).
    /// </summary>
    private static nint DestinationOf(StateEntry entry, LocalTensor destination, List<(torch.Tensor, torch.Tensor)> staged)
    {
        if (destination.PlainAddress != 0 && destination.Entry.DType == entry.DType)
        {
            if (destination.Entry.Bytes != entry.Bytes)
                throw new InvalidOperationException($"'{entry.Name}': the destination holds {destination.Entry.Bytes} bytes, the entry {entry.Bytes}.");
            return destination.PlainAddress;
        }
        var staging = torch.empty(entry.Shape, TorchSharpTensors.ScalarTypeOf(entry.DType));
        staged.Add((staging, destination.Tensor));
        return staging.DataAddress();
    }

    /// <summary>For tests: called before each entry's direct copy (either direction) with the worker's process id and the entry's name.</summary>
    internal static Action<int, string>? BeforeDirectCopy { get; set; }

    /// <summary>For tests and the benchmark: behave as if the kernel refused direct copies, so transfers take the shared-region route.</summary>
    internal static bool SimulateDirectRefusal { get; set; }

    /// <summary>Counts what a transfer moved and reports it after each batch.</summary>
    private sealed class ProgressCounter(int count, long total, IProgress<WeightTransferProgress>? progress)
    {
        public int Done { get; private set; }

        public long Bytes { get; private set; }

        public void Add(List<StateEntry> batch)
        {
            Done += batch.Count;
            Bytes += batch.Sum(e => e.Bytes);
            progress?.Report(new WeightTransferProgress(Done, count, Bytes, total, batch[^1].Name));
        }
    }

    private static Dictionary<string, torch.Tensor> ReadCore(PythonSession session, object source, ModelWeightsOptions? options)
    {
        options = Check(options);
        TorchSharpSupport.EnsureLoadable();
        using var helpers = Helpers(session);
        using var opened = Invoke(helpers, "open_source", [source], options);
        using var handle = opened.AsRef();
        var entries = Describe(helpers, handle, options);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            var done = 0;
            long bytes = 0;
            var total = entries.Sum(e => e.Bytes);
            foreach (var batch in Plan(session, entries, options))
            {
                ReadBatch(helpers, handle, batch, options, keep: true, (entry, view) => result.Add(entry.Name, view));
                done += batch.Count;
                bytes += batch.Sum(e => e.Bytes);
                options.Progress?.Report(new WeightTransferProgress(done, entries.Count, bytes, total, batch[^1].Name));
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values)
                t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads one batch and hands each entry to <paramref name="use"/> as a TorchSharp tensor of the entry's dtype and shape.
    /// <paramref name="keep"/>: the tensor may outlive the batch (isolated: it holds the shared region; in-process: a copy);
    /// otherwise it is valid only inside <paramref name="use"/>, which disposes it.
    /// </summary>
    private static void ReadBatch(PythonRef helpers, PythonRef handle, IReadOnlyList<StateEntry> batch, ModelWeightsOptions options, bool keep,
                                  Action<StateEntry, torch.Tensor> use)
    {
        using var read = Function(helpers, "read_batch");
        using var value = read.Call([handle, batch.Select(e => (object?)e.Index).ToList()], Call(options));
        var items = value.Items;
        if (items.Count != batch.Count)
            throw new InvalidOperationException($"read_batch returned {items.Count} entries for {batch.Count}.");
        for (var i = 0; i < batch.Count; i++)
        {
            var entry = batch[i];
            var data = items[i].AsTensorData();
            if (data.DType != DType.UInt8 || data.ElementCount != entry.Bytes || !data.IsCContiguous)
                throw new InvalidOperationException($"'{entry.Name}': expected {entry.Bytes} contiguous bytes, got {data.DType.Name} of {data.ElementCount} elements.");
            torch.Tensor view;
            if (data is SharedTensorData shared)
            {
                // Over the shared result region, no copy; a kept tensor holds the region until libtorch frees it.
                view = TorchSharpTensors.WrapMemory(shared.Address, entry.DType, entry.Shape, [], keep ? shared.AcquireHold() : null);
            }
            else
            {
                // In-process: over the Python tensor's memory (valid while the value lives), so a kept tensor is copied.
                view = TorchSharpTensors.WrapMemory(data.Address, entry.DType, entry.Shape, [], owner: null);
                if (keep)
                {
                    using var borrowed = view;
                    view = borrowed.clone();
                }
            }
            use(entry, view);
        }
    }

    /// <summary>
    /// Copies <paramref name="source"/> (C-contiguous CPU) into <paramref name="destination"/>: a plain memcpy when the
    /// destination is a contiguous CPU tensor of the same dtype (one thread, no libtorch dispatch: libtorch's parallel
    /// copy_ costs more than it gains on a busy machine), else <c>copy_</c> under <c>no_grad</c> (converts dtypes, any device).
    /// </summary>
    private static void CopyInto(torch.Tensor destination, torch.Tensor source, StateEntry entry)
    {
        if (destination.device_type == DeviceType.CPU && destination.dtype == source.dtype && destination.is_contiguous() && entry.Bytes > 0)
        {
            var to = destination.DataAddress();
            var from = source.DataAddress();
            for (long done = 0; done < entry.Bytes;)
            {
                var chunk = (int)Math.Min(entry.Bytes - done, 1 << 30);
                new NativeMemoryManager(from + (nint)done, chunk).GetSpan().CopyTo(new NativeMemoryManager(to + (nint)done, chunk).GetSpan());
                done += chunk;
            }
            return;
        }
        using (torch.no_grad())
            destination.copy_(source);
    }

    /// <summary>One state-dict entry: its position in the Python side's list (-1 for TorchSharp's), dtype, shape and bytes.</summary>
    private sealed record StateEntry(string Name, DType DType, long[] Shape, long Bytes, int Index = -1);

    private static ModelWeightsOptions Check(ModelWeightsOptions? options)
    {
        options ??= ModelWeightsOptions.Default;
        if (options.BatchBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.BatchBytes, "ModelWeightsOptions.BatchBytes must be positive.");
        return options;
    }

    private static CallOptions Call(ModelWeightsOptions options) => new() { Timeout = options.Timeout };

    private static PythonValue Invoke(PythonRef helpers, string function, object?[] args, ModelWeightsOptions options)
    {
        using var fn = Function(helpers, function);
        return fn.Call(args, Call(options));
    }

    /// <summary>
    /// The helper module. Isolated: a path reference built here, without the resolve round trip of Import (the worker
    /// imports the module at the first call; a failure there is that call's PythonErrorException).
    /// </summary>
    private static PythonRef Helpers(PythonSession session) =>
        session is IsolatedSession isolated ? new IsolatedRef(isolated, new IsolatedSession.Target("module", HelperModule, 0, [], null), "module")
                                            : session.Import(HelperModule);

    /// <summary>A function of the helper module (isolated: a path reference, no round trip; see <see cref="Helpers"/>).</summary>
    private static PythonRef Function(PythonRef helpers, string name) =>
        helpers is IsolatedRef module ? new IsolatedRef((IsolatedSession)module.Session, module.Target with { Attrs = [name] }, "function")
                                      : helpers.GetAttr(name);

    private static List<StateEntry> Describe(PythonRef helpers, PythonRef handle, ModelWeightsOptions options)
    {
        using var text = Invoke(helpers, "describe_json", [handle], options);
        return ParseDescription(text);
    }

    /// <summary>describe_json's text: the entries, each with a byte count computed here from its shape and dtype.</summary>
    /// <summary>
    /// Reads the reply of <c>open_described</c> / <c>open_target_described</c> ([handle, description, places]; the caller
    /// disposes the handle) and moves the hold to the worker that has the handle. A source or target reached by path is
    /// bound to no worker, so it was described before any hold: another caller's request may have run in between and
    /// given a tensor new memory (<c>param.data = ...</c>), freeing what was described. With <paramref name="repin"/> the
    /// places are then dropped, and every entry is pinned again under the hold (the tensors as they are now).
    /// </summary>
    private static (PythonRef Handle, List<StateEntry> Entries, Place?[] Places) ReadOpened(
        PythonValue opened, string function, string shape, bool repin, ref WorkerProcess? worker, ref IDisposable? hold)
    {
        if (opened.Items.Count != 3)
            throw new WorkerProtocolException($"{function} must return {shape}");
        var handle = opened.Items[0].AsRef();
        try
        {
            var entries = ParseDescription(opened.Items[1]);
            var places = ParsePlaces(opened.Items[2], entries.Count, function, nullable: true);
            var handleWorker = (handle as IsolatedRef)?.Target.Worker;
            if (!ReferenceEquals(handleWorker, worker))
            {
                hold?.Dispose();
                worker = handleWorker;
                hold = worker?.Hold();
                if (repin)
                    Array.Clear(places);
            }
            return (handle, entries, places);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static List<StateEntry> ParseDescription(PythonValue text)
    {
        const string Function = "describe_json";
        var entries = new List<StateEntry>();
        var reader = ArrayReader(text, Function);
        var shapeBuffer = new List<long>();
        try
        {
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                string? name = null, dtypeName = null;
                long described = 0;
                if (!(reader.TokenType == JsonTokenType.StartArray
                      && reader.Read() && reader.TokenType == JsonTokenType.String && (name = reader.GetString()) is not null
                      && reader.Read() && reader.TokenType == JsonTokenType.String && (dtypeName = reader.GetString()) is not null
                      && reader.Read() && ReadInt64s(ref reader, shapeBuffer)
                      && reader.Read() && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out described)
                      && reader.Read() && reader.TokenType == JsonTokenType.EndArray))
                    throw new WorkerProtocolException($"{Function}: entry {entries.Count} must be [name, dtype, shape, nbytes]");
                var dtype = DType.FromName(dtypeName)
                            ?? throw new InvalidOperationException($"'{name}': dtype '{dtypeName}' is not in the dtype table.");
                var shape = shapeBuffer.ToArray();
                // The byte count is computed here from the shape and the dtype table, never taken from the worker's word.
                long bytes = -1;
                try
                {
                    if (shape.All(d => d >= 0))
                        bytes = checked(Layout.ElementCount(shape) * dtype.ItemSize);
                }
                catch (OverflowException)
                {
                }
                if (bytes < 0)
                    throw new WorkerProtocolException($"describe: entry '{name}' has an impossible shape [{string.Join(", ", shape)}]");
                if (described != bytes)
                    throw new WorkerProtocolException($"describe: entry '{name}' ({dtype.Name} [{string.Join(", ", shape)}]) holds {bytes:N0} bytes, Python said {described:N0}");
                entries.Add(new StateEntry(name, dtype, shape, bytes, entries.Count));
            }
        }
        catch (JsonException e)
        {
            throw new WorkerProtocolException($"{Function} must return a JSON array as text ({e.Message})");
        }
        return entries;
    }

    /// <summary>Reads a JSON array of 64-bit integers (the reader on its start) into <paramref name="values"/>; false if it is something else.</summary>
    private static bool ReadInt64s(ref Utf8JsonReader reader, List<long> values)
    {
        values.Clear();
        if (reader.TokenType != JsonTokenType.StartArray)
            return false;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var value))
                return false;
            values.Add(value);
        }
        return reader.TokenType == JsonTokenType.EndArray;
    }

    /// <summary>
    /// A reader over a helper's compact reply (one JSON text instead of a list of lists: one value to carry across the worker
    /// protocol instead of several per entry; read without building a document), positioned on the array at its root.
    /// </summary>
    private static Utf8JsonReader ArrayReader(PythonValue text, string function)
    {
        try
        {
            var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(text.AsString()));
            if (reader.Read() && reader.TokenType == JsonTokenType.StartArray)
                return reader;
        }
        catch (Exception e) when (e is JsonException or InvalidCastException or InvalidOperationException)
        {
            throw new WorkerProtocolException($"{function} must return a JSON array as text ({e.Message})");
        }
        throw new WorkerProtocolException($"{function} must return a JSON array as text");
    }

    /// <summary>One entry's memory in the worker, as it described it: its address and byte count.</summary>
    private readonly record struct Place(long Address, long Length);

    /// <summary>
    /// A reply of [address, nbytes] rows (or null where <paramref name="nullable"/>: an entry that needs pinning first):
    /// exactly <paramref name="count"/> of them.
    /// </summary>
    private static Place?[] ParsePlaces(PythonValue text, int count, string function, bool nullable)
    {
        var places = new Place?[count];
        var reader = ArrayReader(text, function);
        var pair = new List<long>(2);
        var found = 0;
        try
        {
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (found < count)
                {
                    if (reader.TokenType == JsonTokenType.Null && nullable)
                        places[found] = null;
                    else if (ReadInt64s(ref reader, pair) && pair.Count == 2)
                        places[found] = new Place(pair[0], pair[1]);
                    else
                        throw new WorkerProtocolException($"{function}: item {found} must be [address, nbytes] (64-bit integers){(nullable ? " or null" : "")}");
                }
                else
                {
                    reader.Skip();
                }
                found++;
            }
        }
        catch (JsonException e)
        {
            throw new WorkerProtocolException($"{function} must return a JSON array as text ({e.Message})");
        }
        if (found != count)
            throw new WorkerProtocolException($"{function} described {found} entries for {count}");
        return places;
    }

    /// <summary>PyTorch's load_state_dict rules over the two descriptions; throws before anything moves.</summary>
    private static (List<(StateEntry Source, StateEntry Destination)> Pairs, List<string> Missing, List<string> Unexpected) Match(
        IReadOnlyList<StateEntry> source, IReadOnlyDictionary<string, StateEntry> destination, ModelWeightsOptions options)
    {
        var pairs = new List<(StateEntry, StateEntry)>();
        var unexpected = new List<string>();
        var mismatches = new List<StateEntryMismatch>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in source)
        {
            seen.Add(entry.Name);
            if (!destination.TryGetValue(entry.Name, out var target))
            {
                unexpected.Add(entry.Name);
                continue;
            }
            if (!entry.Shape.AsSpan().SequenceEqual(target.Shape) || (entry.DType != target.DType && !options.ConvertDTypes))
                mismatches.Add(new StateEntryMismatch(entry.Name, entry.DType.Name, entry.Shape, target.DType.Name, target.Shape));
            else
                pairs.Add((entry, target));
        }
        var missing = destination.Keys.Where(k => !seen.Contains(k)).ToList();
        if (mismatches.Count > 0 || (options.Strict && (missing.Count > 0 || unexpected.Count > 0)))
            throw new StateDictMismatchException(missing, unexpected, mismatches);
        return (pairs, missing, unexpected);
    }

    /// <summary>
    /// Splits the entries into batches of at most the budget (a larger tensor alone). Isolated sessions move them through
    /// shared memory: the largest tensor must fit in /dev/shm's free space, and the budget shrinks to half of it.
    /// </summary>
    private static List<List<StateEntry>> Plan(PythonSession session, List<StateEntry> entries, ModelWeightsOptions options)
    {
        var budget = options.BatchBytes;
        if (session is IsolatedSession && entries.Count > 0)
        {
            var largest = entries.MaxBy(e => e.Bytes)!;
            var available = SharedMemoryProbe?.Invoke() ?? FreeSharedMemory();
            if (available >= 0)
            {
                var needed = Align(largest.Bytes);
                if (available < needed)
                    throw new SharedMemoryTooSmallException(SharedMemoryPath, needed, available, largest.Name);
                budget = Math.Min(budget, Math.Max(needed, available / 2));
            }
        }
        return Batches(entries, budget);
    }

    /// <summary>Splits the entries into batches of at most <paramref name="budget"/> bytes (a larger tensor alone).</summary>
    private static List<List<StateEntry>> Batches(List<StateEntry> entries, long budget)
    {
        var batches = new List<List<StateEntry>>();
        List<StateEntry>? current = null;
        long size = 0;
        foreach (var entry in entries)
        {
            var bytes = Align(entry.Bytes);
            if (current is null || (size + bytes > budget && current.Count > 0))
            {
                current = [];
                batches.Add(current);
                size = 0;
            }
            current.Add(entry);
            size += bytes;
        }
        return batches;
    }

    private static long Align(long bytes) => (bytes + 63) / 64 * 64; // the protocol's payload alignment

    /// <summary>Free bytes in /dev/shm, or -1 where there is none (not Linux).</summary>
    private static long FreeSharedMemory()
    {
        try
        {
            return Directory.Exists(SharedMemoryPath) ? new DriveInfo(SharedMemoryPath).AvailableFreeSpace : -1;
        }
        catch (IOException)
        {
            return -1;
        }
    }
}
