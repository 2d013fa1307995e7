using NUnit.Framework.Constraints;

namespace Interop.Testing;

/// <summary>Entry points for <see cref="TensorCloseConstraint"/>: <c>Assert.That(actual, TensorIs.CloseTo(expected).Within(rtol, atol))</c>.</summary>
public static class TensorIs
{
    /// <summary>A constraint that passes when the actual tensor is close to <paramref name="expected"/> by <c>torch.testing.assert_close</c>'s rules.</summary>
    public static TensorCloseConstraint CloseTo(object expected) => new(expected);
}

/// <summary>
/// An NUnit constraint with <c>torch.testing.assert_close</c>'s semantics; failures carry PyTorch's message
/// (mismatched elements, greatest absolute and relative differences and their indices, the tolerances).
/// </summary>
public sealed class TensorCloseConstraint : Constraint
{
    private readonly object _expected;
    private CloseOptions _options = CloseOptions.Default;

    /// <summary>A constraint against <paramref name="expected"/> (any operand <see cref="TensorOperand.From(object)"/> reads).</summary>
    public TensorCloseConstraint(object expected) : base(expected) => _expected = expected ?? throw new ArgumentNullException(nameof(expected));

    /// <summary>The options in use.</summary>
    public CloseOptions Options => _options;

    /// <summary>Explicit tolerances (both, as PyTorch requires).</summary>
    public TensorCloseConstraint Within(double rtol, double atol)
    {
        _options = _options with { Rtol = rtol, Atol = atol };
        return this;
    }

    /// <summary>NaN equals NaN.</summary>
    public TensorCloseConstraint EqualNan()
    {
        _options = _options with { EqualNan = true };
        return this;
    }

    /// <summary>Different dtypes are promoted to a common one instead of failing (<c>check_dtype=False</c>).</summary>
    public TensorCloseConstraint IgnoringDtype()
    {
        _options = _options with { CheckDtype = false };
        return this;
    }

    /// <summary>Strides must match too (<c>check_stride=True</c>).</summary>
    public TensorCloseConstraint CheckingStride()
    {
        _options = _options with { CheckStride = true };
        return this;
    }

    /// <summary>Reproduce another PyTorch generation's arithmetic.</summary>
    public TensorCloseConstraint Using(ComparisonSemantics semantics)
    {
        _options = _options with { Semantics = semantics };
        return this;
    }

    /// <summary>All options at once.</summary>
    public TensorCloseConstraint WithOptions(CloseOptions options)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        return this;
    }

    /// <inheritdoc/>
    public override string Description => $"a tensor close to {TensorOperand.From(_expected)} (torch.testing.assert_close)";

    /// <inheritdoc/>
    public override ConstraintResult ApplyTo<TActual>(TActual actual)
    {
        ArgumentNullException.ThrowIfNull(actual);
        var result = TensorComparer.Compare(TensorOperand.From(actual), TensorOperand.From(_expected), _options);
        return new CloseConstraintResult(this, actual, result);
    }

    private sealed class CloseConstraintResult(IConstraint constraint, object? actual, CloseResult result)
        : ConstraintResult(constraint, actual, result.Passed)
    {
        public override void WriteMessageTo(MessageWriter writer) => writer.WriteLine(result.Message);
    }
}
