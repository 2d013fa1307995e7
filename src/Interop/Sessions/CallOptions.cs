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

    /// <summary>
    /// The longest a call may take. A worker-process session enforces it (by ending the worker). The in-process
    /// session cannot stop Python code that is running (CPython has no safe way to abort a thread), so it does not
    /// enforce it: it only applies to <see cref="PythonRef.CallAsync"/>'s wait, which gives up with
    /// <see cref="TimeoutException"/> while the call finishes in the background.
    /// </summary>
    public TimeSpan? Timeout { get; init; }
}
