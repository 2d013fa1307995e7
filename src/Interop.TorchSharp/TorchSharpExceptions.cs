using Interop.DTypes;
using Interop.Errors;

namespace Interop.TorchSharp;

/// <summary>TorchSharp cannot run in this process (its native library does not load here); the message says why and what to do.</summary>
public sealed class TorchSharpUnavailableException : InteropException
{
    /// <summary>Creates the exception with the reason (<see cref="TorchSharpSupport.Problem"/>).</summary>
    public TorchSharpUnavailableException(string reason) : base(reason) { }

    /// <summary>Creates the exception with the reason and its cause.</summary>
    public TorchSharpUnavailableException(string reason, Exception? innerException) : base(reason, innerException) { }
}

/// <summary>A dtype has no counterpart on the other side: TorchSharp 0.107 has no uint16/32/64 tensors; NumPy has no bfloat16 or quantized types.</summary>
public sealed class TorchSharpDTypeException : InteropException
{
    /// <summary>Creates the exception with the message (problem and fix).</summary>
    public TorchSharpDTypeException(string message, string dtype) : base(message)
    {
        DType = dtype;
    }

    /// <summary>The dtype that has no counterpart.</summary>
    public string DType { get; }

    internal static TorchSharpDTypeException NoScalarType(DType dtype)
    {
        // The wider signed type that holds every value, from the same table.
        var wider = Interop.DTypes.DType.From(DTypeKind.SignedInteger, dtype.ItemSize * 2);
        var fix = wider is not null
            ? $"convert in NumPy first: arr.astype(np.{wider.Name}) (holds every {dtype.Name} value)"
            : $"convert in NumPy first: arr.view(np.int{dtype.ItemSize * 8}) (same bits, read as signed) or arr.astype(np.float64)";
        return new TorchSharpDTypeException($"TorchSharp 0.107 has no {dtype.Name} tensors (its ScalarType has no unsigned type wider than 8 bits). Fix: {fix}.", dtype.Name);
    }
}

/// <summary>The TorchSharp tensor requires grad and the caller turned detaching off (<see cref="TorchSharpExportOptions.Detach"/> = false).</summary>
public sealed class TorchSharpRequiresGradException : InteropException
{
    /// <summary>Creates the exception.</summary>
    public TorchSharpRequiresGradException()
        : base("The TorchSharp tensor requires grad, and TorchSharpExportOptions.Detach is false, so it is not exported to NumPy " +
               "(NumPy would not carry the autograd graph). Fix: export tensor.detach(), or leave Detach at its default (true).")
    {
    }
}

/// <summary>
/// A state dict does not fit its destination under PyTorch's <c>load_state_dict</c> rules: every missing key, unexpected
/// key (strict loads) and shape or dtype mismatch is listed, and nothing was copied.
/// </summary>
public sealed class StateDictMismatchException : InteropException
{
    /// <summary>Creates the exception from the three lists (the message lists them all).</summary>
    public StateDictMismatchException(IReadOnlyList<string> missingKeys, IReadOnlyList<string> unexpectedKeys, IReadOnlyList<StateEntryMismatch> mismatches)
        : base(Describe(missingKeys, unexpectedKeys, mismatches))
    {
        MissingKeys = missingKeys;
        UnexpectedKeys = unexpectedKeys;
        Mismatches = mismatches;
    }

    /// <summary>Keys of the destination that the source lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; }

    /// <summary>Keys of the source that the destination lacks.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }

    /// <summary>Entries whose shape or dtype differs.</summary>
    public IReadOnlyList<StateEntryMismatch> Mismatches { get; }

    private static string Describe(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<StateEntryMismatch> mismatches)
    {
        var text = new System.Text.StringBuilder("The state dict does not match its destination; nothing was copied.");
        if (missing.Count > 0)
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $" Missing key(s) ({missing.Count}): {string.Join(", ", missing)}.");
        if (unexpected.Count > 0)
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $" Unexpected key(s) ({unexpected.Count}): {string.Join(", ", unexpected)}.");
        if (mismatches.Count > 0)
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $" Shape/dtype mismatch(es) ({mismatches.Count}): {string.Join("; ", mismatches)}.");
        text.Append(" Fix: build the destination with the same architecture and names (see docs/models.md for torchvision vs TorchSharp's TorchVision)");
        if (missing.Count > 0 || unexpected.Count > 0)
            text.Append(", or load non-strictly (ModelWeightsOptions.Strict = false) to copy only the keys both sides have");
        if (mismatches.Any(m => m.SourceDType != m.DestinationDType))
            text.Append(", or convert dtypes on request (ModelWeightsOptions.ConvertDTypes = true)");
        return text.Append('.').ToString();
    }
}

/// <summary>
/// /dev/shm has less free space than the largest tensor of a transfer needs (isolated sessions move tensors through
/// shared memory). The message names the size needed.
/// </summary>
public sealed class SharedMemoryTooSmallException : InteropException
{
    /// <summary>Creates the exception with the sizes in bytes.</summary>
    public SharedMemoryTooSmallException(string path, long requiredBytes, long availableBytes, string tensorName)
        : base($"{path} has {availableBytes:N0} bytes free, but the transfer needs at least {requiredBytes:N0} bytes " +
               $"({requiredBytes / (1024.0 * 1024):F1} MiB, for '{tensorName}', the largest tensor) of shared memory. " +
               $"Fix: give {path} more room (Docker: --shm-size={Math.Max(1, (requiredBytes * 2 + (1 << 20) - 1) >> 20)}m or more; " +
               "or free space there), or load in-process where the libtorch builds allow it.")
    {
        Path = path;
        RequiredBytes = requiredBytes;
        AvailableBytes = availableBytes;
        TensorName = tensorName;
    }

    /// <summary>The shared-memory directory checked (/dev/shm).</summary>
    public string Path { get; }

    /// <summary>Bytes the largest tensor needs.</summary>
    public long RequiredBytes { get; }

    /// <summary>Bytes free there when checked.</summary>
    public long AvailableBytes { get; }

    /// <summary>The largest tensor's name.</summary>
    public string TensorName { get; }
}
