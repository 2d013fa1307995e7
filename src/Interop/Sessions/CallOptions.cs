using Interop.Torch;

namespace Interop.Sessions;

/// <summary>Whether PyTorch records autograd during a call.</summary>
public enum GradMode
{
    /// <summary>Whatever the callee does (PyTorch's default: grad enabled).</summary>
    Default,
    /// <summary>The call runs inside <c>torch.no_grad()</c>.</summary>
    NoGrad,
    /// <summary>The call runs inside <c>torch.inference_mode()</c> (tensors made in it cannot be used in autograd later).</summary>
    InferenceMode,
}

/// <summary>What .NET arrays (and <see cref="TensorArgument"/>, <see cref="System.Numerics.Tensors.Tensor{T}"/>, tensor results passed back) become in Python.</summary>
public enum ArrayConversion
{
    /// <summary>A <c>torch.Tensor</c> when PyTorch is installed where the call runs, else a <c>numpy.ndarray</c>.</summary>
    Default,
    /// <summary>A <c>numpy.ndarray</c> (for NumPy, SciPy, pandas code), whether or not PyTorch is installed.</summary>
    NumPy,
    /// <summary>A <c>torch.Tensor</c> (over a NumPy array, <c>torch.from_numpy</c>); fails when PyTorch is not installed.</summary>
    Torch,
}

/// <summary>Options of one <see cref="PythonRef.Call(IReadOnlyList{object?}, CallOptions?)"/>. Immutable; share freely.</summary>
public sealed record CallOptions
{
    /// <summary>No keywords, default grad mode, default export policy, no timeout.</summary>
    public static CallOptions Default { get; } = new();

    /// <summary>Keyword arguments (<c>f(*args, **kwargs)</c>); values follow the same rules as positional arguments.</summary>
    public IReadOnlyDictionary<string, object?>? KeywordArguments { get; init; }

    /// <summary>The autograd mode the call runs in (<c>torch.no_grad()</c>, <c>torch.inference_mode()</c>).</summary>
    public GradMode GradMode { get; init; }

    /// <summary>How tensor results are exported (passed to <c>interop_helpers.torch_export.prepare</c>).</summary>
    public ExportOptions Export { get; init; } = ExportOptions.Default;

    /// <summary>What array arguments become in Python (NumPy array or torch tensor); see <see cref="ArrayConversion"/>.</summary>
    public ArrayConversion Arrays { get; init; }

    /// <summary>
    /// The longest a call may take; past it the call throws <see cref="Errors.WorkerTimeoutException"/> in every kind of
    /// session. A worker-process session ends the worker (the next call starts a fresh one). The in-process session
    /// raises <c>interop_helpers.calls.Interrupted</c> in the thread running the call, at its next bytecode boundary; the
    /// interpreter stays usable. A long native call (a big matrix product, <c>time.sleep</c>) is not interrupted: the
    /// in-process call then ends when that native call returns. See docs/scripting.md.
    /// </summary>
    public TimeSpan? Timeout { get; init; }
}
