namespace Interop.Torch;

/// <summary>
/// The export policy's switches, passed to <c>interop_helpers.torch_export.prepare</c> before a tensor's real
/// <c>Tensor.numpy()</c> (see docs/torch.md). The defaults detach tensors that require grad and refuse dtypes NumPy lacks.
/// </summary>
public sealed record ExportOptions
{
    /// <summary>The defaults: <see cref="Detach"/> on, <see cref="Upcast"/> off.</summary>
    public static ExportOptions Default { get; } = new();

    /// <summary>
    /// When true (the default), a tensor that requires grad is detached before export (the exported values are the
    /// same; the autograd graph is not carried to NumPy). When false, such a tensor raises
    /// <see cref="Errors.TensorRequiresGradException"/>, so callers who must not silently leave autograd notice.
    /// </summary>
    public bool Detach { get; init; } = true;

    /// <summary>
    /// When true, dtypes NumPy lacks are widened to the nearest dtype it has (bfloat16 and float8 variants to float32,
    /// complex32 to complex64) — a copy. When false (the default), such tensors raise <see cref="Errors.TensorDTypeNotSupportedByNumPyException"/>.
    /// </summary>
    public bool Upcast { get; init; }
}
