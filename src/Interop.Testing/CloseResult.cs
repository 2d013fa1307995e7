namespace Interop.Testing;

/// <summary>Which check of <c>assert_close</c> failed.</summary>
public enum CloseCheck
{
    /// <summary>None: the tensors are close.</summary>
    None,
    /// <summary>The shapes differ (there is no broadcasting).</summary>
    Shape,
    /// <summary>The strides differ (only with <see cref="CloseOptions.CheckStride"/>).</summary>
    Stride,
    /// <summary>The dtypes differ (with <see cref="CloseOptions.CheckDtype"/>, the default).</summary>
    DType,
    /// <summary>Some values are not close.</summary>
    Values,
}

/// <summary>The verdict of a comparison and what PyTorch's failure message reports.</summary>
public sealed class CloseResult
{
    internal CloseResult(CloseCheck failed, string? message, double rtol, double atol)
    {
        FailedCheck = failed;
        Message = message;
        Rtol = rtol;
        Atol = atol;
    }

    /// <summary>True when the tensors are close.</summary>
    public bool Passed => FailedCheck == CloseCheck.None;

    /// <summary>The check that failed.</summary>
    public CloseCheck FailedCheck { get; }

    /// <summary>PyTorch's failure message (null when passed).</summary>
    public string? Message { get; }

    /// <summary>The relative tolerance used.</summary>
    public double Rtol { get; }

    /// <summary>The absolute tolerance used.</summary>
    public double Atol { get; }

    /// <summary>Elements that are not close (values checked only).</summary>
    public long MismatchCount { get; internal init; }

    /// <summary>Elements compared.</summary>
    public long ElementCount { get; internal init; }

    /// <summary>The greatest absolute difference among mismatched elements (PyTorch's arithmetic and dtype).</summary>
    public double GreatestAbsoluteDifference { get; internal init; }

    /// <summary>Where <see cref="GreatestAbsoluteDifference"/> is (empty for 0-d).</summary>
    public IReadOnlyList<long> GreatestAbsoluteDifferenceIndex { get; internal init; } = [];

    /// <summary>The greatest relative difference (absolute difference / |expected|) among mismatched elements.</summary>
    public double GreatestRelativeDifference { get; internal init; }

    /// <summary>Where <see cref="GreatestRelativeDifference"/> is (empty for 0-d).</summary>
    public IReadOnlyList<long> GreatestRelativeDifferenceIndex { get; internal init; } = [];

    /// <inheritdoc/>
    public override string ToString() => Passed ? $"close (rtol={Rtol}, atol={Atol})" : Message!;
}
