using Interop.DTypes;

namespace Interop.Testing;

/// <summary>Which PyTorch generation's <c>assert_close</c> to reproduce; they differ in the precision of the comparison.</summary>
public enum ComparisonSemantics
{
    /// <summary>
    /// PyTorch 2.x (the default): values are compared in their (common) dtype, so float32 tolerances are evaluated in
    /// float32 arithmetic, float16 in float16; statistics are computed in the dtype (integers in int64); a 0-d failure
    /// adds <c>Expected … but got ….</c> to the message.
    /// </summary>
    PyTorch2,
    /// <summary>
    /// PyTorch 1.13: both values are first promoted to float64 / complex128 / int64, and the comparison and the
    /// statistics are computed there.
    /// </summary>
    PyTorch1,
}

/// <summary>The options of <c>torch.testing.assert_close</c>.</summary>
public sealed record CloseOptions
{
    /// <summary>The options with every default.</summary>
    public static CloseOptions Default { get; } = new();

    /// <summary>Relative tolerance; with <see cref="Atol"/> both given or both null (null: PyTorch's default for the dtypes).</summary>
    public double? Rtol { get; init; }

    /// <summary>Absolute tolerance; with <see cref="Rtol"/> both given or both null.</summary>
    public double? Atol { get; init; }

    /// <summary>NaN equals NaN (for complex: a NaN in any component on both sides).</summary>
    public bool EqualNan { get; init; }

    /// <summary>Refuse different dtypes (default); when false both are promoted to a common dtype as PyTorch does.</summary>
    public bool CheckDtype { get; init; } = true;

    /// <summary>Refuse different strides (in elements), as <c>check_stride=True</c>.</summary>
    public bool CheckStride { get; init; }

    /// <summary>The PyTorch generation whose arithmetic to reproduce.</summary>
    public ComparisonSemantics Semantics { get; init; } = ComparisonSemantics.PyTorch2;

    /// <summary>PyTorch's default (rtol, atol) for one dtype: float16 (1e-3, 1e-5), bfloat16 (1.6e-2, 1e-5),
    /// float32 (1.3e-6, 1e-5), float64 (1e-7, 1e-7), complex by component type; integers and bool (0, 0).</summary>
    public static (double Rtol, double Atol) DefaultTolerances(DType dtype)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        if (dtype == DType.Float16) return (0.001, 1e-5);
        if (dtype == DType.BFloat16) return (0.016, 1e-5);
        if (dtype == DType.Float32 || dtype == DType.Complex64) return (1.3e-6, 1e-5);
        if (dtype == DType.Float64 || dtype == DType.Complex128) return (1e-7, 1e-7);
        return (0, 0);
    }
}
