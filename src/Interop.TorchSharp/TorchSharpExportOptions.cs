namespace Interop.TorchSharp;

/// <summary>
/// How TorchSharp tensors are prepared for NumPy; the same policy as the PyTorch side's export options: detach
/// tensors that require grad by default, refuse dtypes NumPy lacks unless <see cref="Upcast"/> is set.
/// </summary>
public sealed record TorchSharpExportOptions
{
    /// <summary>The defaults: <see cref="Detach"/> on, <see cref="Upcast"/> off.</summary>
    public static TorchSharpExportOptions Default { get; } = new();

    /// <summary>
    /// When true (the default), a tensor that requires grad is exported as <c>tensor.detach()</c> (same memory and values,
    /// no autograd graph). When false, such a tensor raises <see cref="TorchSharpRequiresGradException"/>.
    /// </summary>
    public bool Detach { get; init; } = true;

    /// <summary>When true, bfloat16 tensors are widened to float32 (a copy); when false (the default) they raise <see cref="TorchSharpDTypeException"/>.</summary>
    public bool Upcast { get; init; }
}
