namespace Interop.TorchSharp;

/// <summary>How <see cref="ModelWeights"/> moves and checks a state dict.</summary>
public sealed record ModelWeightsOptions
{
    /// <summary>Strict, no dtype conversion, 64 MiB batches, no progress, the session's default timeout.</summary>
    public static ModelWeightsOptions Default { get; } = new();

    /// <summary>
    /// PyTorch's <c>load_state_dict(strict=...)</c>: when true (the default) a missing or an unexpected key is an error;
    /// when false they are reported in <see cref="WeightLoadResult"/> and only the keys both sides have are copied.
    /// Shape mismatches are an error either way, as in PyTorch.
    /// </summary>
    public bool Strict { get; init; } = true;

    /// <summary>
    /// When true, an entry whose dtype differs from the destination's is converted (<c>copy_</c>, as PyTorch's
    /// <c>load_state_dict</c> does). False by default: nothing is upcast or downcast unless asked, and a dtype
    /// mismatch is listed in <see cref="StateDictMismatchException"/>.
    /// </summary>
    public bool ConvertDTypes { get; init; }

    /// <summary>
    /// The most bytes one batch moves (default 64 MiB); a tensor larger than this travels alone. The extra peak memory of a
    /// transfer is a small multiple of max(this, the largest tensor), never of the model. Must be positive.
    /// </summary>
    public long BatchBytes { get; init; } = 64L << 20;

    /// <summary>Told after every batch (tensors and bytes done so far, of the total).</summary>
    public IProgress<WeightTransferProgress>? Progress { get; init; }

    /// <summary>The timeout of each call into Python (a batch, or opening the source); null: the session's default.</summary>
    public TimeSpan? Timeout { get; init; }
}

/// <summary>Where a weight transfer stands, reported after each batch.</summary>
/// <param name="TensorsDone">Entries transferred so far.</param>
/// <param name="TensorCount">Entries to transfer in all.</param>
/// <param name="BytesDone">Bytes transferred so far.</param>
/// <param name="TotalBytes">Bytes to transfer in all.</param>
/// <param name="LastName">The name of the last entry transferred.</param>
public readonly record struct WeightTransferProgress(int TensorsDone, int TensorCount, long BytesDone, long TotalBytes, string? LastName);

/// <summary>The outcome of a load: what was copied, and (non-strict loads) the keys that were skipped.</summary>
public sealed class WeightLoadResult
{
    internal WeightLoadResult(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, int tensors, long bytes)
    {
        MissingKeys = missing;
        UnexpectedKeys = unexpected;
        TensorCount = tensors;
        Bytes = bytes;
    }

    /// <summary>Keys of the destination that the source lacks (left unchanged). Empty after a strict load.</summary>
    public IReadOnlyList<string> MissingKeys { get; }

    /// <summary>Keys of the source that the destination lacks (not copied). Empty after a strict load.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }

    /// <summary>Entries copied.</summary>
    public int TensorCount { get; }

    /// <summary>Bytes copied (of the source's dtypes).</summary>
    public long Bytes { get; }

    /// <summary>How the bytes travelled (see docs/models.md).</summary>
    public WeightRoute Route { get; internal init; }
}

/// <summary>How a weight transfer moved the bytes between the processes (see docs/models.md).</summary>
public enum WeightRoute
{
    /// <summary>An in-process session: the Python tensor's memory was wrapped and copied once.</summary>
    InProcess,

    /// <summary>
    /// Isolated session, one copy: this process copied straight between its tensors and the worker's
    /// (<c>process_vm_readv(2)</c> / <c>process_vm_writev(2)</c>, Linux, allowed by Yama's ptrace_scope 0 or 1 for a child process).
    /// </summary>
    DirectCopy,

    /// <summary>
    /// Isolated session, two copies: through a shared-memory region (the worker copies into it, this process out of it, or
    /// the reverse): where direct copies are refused (ptrace_scope 2 or 3, seccomp, not Linux).
    /// </summary>
    SharedRegion,
}

/// <summary>One entry whose shape or dtype differs between the source and the destination.</summary>
/// <param name="Name">The state-dict key.</param>
/// <param name="SourceDType">The source's dtype (the dtype table's name, e.g. <c>bfloat16</c>).</param>
/// <param name="SourceShape">The source's shape.</param>
/// <param name="DestinationDType">The destination's dtype.</param>
/// <param name="DestinationShape">The destination's shape.</param>
public sealed record StateEntryMismatch(string Name, string SourceDType, IReadOnlyList<long> SourceShape, string DestinationDType, IReadOnlyList<long> DestinationShape)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{Name}: source {SourceDType} [{string.Join(", ", SourceShape)}], destination {DestinationDType} [{string.Join(", ", DestinationShape)}]";
}
