// Design notes: torch.testing.assert_close for strided tensors, re-derived from PyTorch's documented behaviour and
// torch/testing/_comparison.py (1.13 and 2.6), in PyTorch's arithmetic:
// - checks in PyTorch's order: shape, stride (opt-in), dtype (opt-out); then values are cast to the promoted dtype;
// - isclose: a == b, or (equal_nan and both NaN), or |a - b| finite and <= atol + |rtol * b|. PyTorch 2 evaluates it
//   in the dtype (float16/bfloat16 via float opmath with one rounding per op; integer differences wrap in the dtype;
//   tolerances on integers in float32, bool compared as float32); PyTorch 1.13 first promotes to float64/complex128/int64;
// - statistics over mismatches only (matches count as 0): |a - b| and |a - b| / |b| in the same arithmetic
//   (integers in int64, their ratio in float32), greatest values by torch.max (NaN wins, first index on ties);
// - a 0-d failure is reported with Python-number arithmetic on .item() values.
using System.Numerics;
using SysComplex = System.Numerics.Complex;
using Interop.DTypes;

namespace Interop.Testing;

/// <summary>The comparison behind <see cref="TensorAssert"/>: PyTorch's verdict and message for two operands.</summary>
public static class TensorComparer
{
    /// <summary>Compares <paramref name="actual"/> with <paramref name="expected"/> as <c>torch.testing.assert_close</c> does.</summary>
    /// <exception cref="ArgumentException">Only one of rtol and atol is given (PyTorch refuses that too).</exception>
    public static CloseResult Compare(TensorOperand actual, TensorOperand expected, CloseOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(expected);
        options ??= CloseOptions.Default;
        if (options.Rtol is null != options.Atol is null)
            throw new ArgumentException($"Both 'rtol' and 'atol' must be either specified or omitted, but got no {(options.Rtol is null ? "rtol" : "atol")}.", nameof(options));
        var (rtol, atol) = options.Rtol is { } r ? (r, options.Atol!.Value) : Defaults(actual.DType, expected.DType);

        if (!actual.Shape.SequenceEqual(expected.Shape))
            return Attribute(CloseCheck.Shape, "shape", PythonFormat.Size(actual.Shape), PythonFormat.Size(expected.Shape), rtol, atol);
        if (options.CheckStride && !actual.Strides.SequenceEqual(expected.Strides))
            return Attribute(CloseCheck.Stride, "stride()", PythonFormat.Tuple(actual.Strides), PythonFormat.Tuple(expected.Strides), rtol, atol);
        if (options.CheckDtype && actual.DType != expected.DType)
            return Attribute(CloseCheck.DType, "dtype", actual.DType.TorchName, expected.DType.TorchName, rtol, atol);

        var common = Kinds.Promote(actual.DType, expected.DType);
        var compute = common;
        if (options.Semantics == ComparisonSemantics.PyTorch1)
            compute = common.Kind switch
            {
                DTypeKind.Float => DType.Float64,
                DTypeKind.Complex => DType.Complex128,
                _ => DType.Int64,
            };
        var a = actual.CastTo(common).CastTo(compute);
        var b = expected.CastTo(common).CastTo(compute);
        var n = checked((int)a.ElementCount);
        var positions = options.Semantics == ComparisonSemantics.PyTorch1 && compute.Kind == DTypeKind.Complex
            ? TorchOneLoops.Of(actual, expected, compute) : null;
        var close = new bool[n];
        var mismatches = 0;
        for (var i = 0; i < n; i++)
        {
            close[i] = IsClose(a, b, i, compute, rtol, atol, options.EqualNan, options.Semantics, positions);
            if (!close[i])
                mismatches++;
        }
        if (mismatches == 0)
            return new CloseResult(CloseCheck.None, null, rtol, atol) { ElementCount = n };
        return a.Shape.Count == 0
            ? ScalarFailure(a, b, compute, rtol, atol, options.Semantics)
            : TensorFailure(a, b, close, mismatches, compute, rtol, atol, options.Semantics, positions);
    }

    /// <summary>
    /// The greatest absolute and relative differences over all elements (in float64; equal values, and NaN on both
    /// sides, count as 0; |expected| = 0 with a difference gives an infinite relative difference), for reports.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public static (double Absolute, double Relative) Differences(TensorOperand actual, TensorOperand expected)
    {
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(expected);
        if (!actual.Shape.SequenceEqual(expected.Shape))
            throw new ArgumentException($"Shapes differ: {PythonFormat.Size(actual.Shape)} and {PythonFormat.Size(expected.Shape)}.", nameof(actual));
        double abs = 0, rel = 0;
        var complex = actual.DType.Kind == DTypeKind.Complex || expected.DType.Kind == DTypeKind.Complex;
        var a = actual.CastTo(complex ? DType.Complex128 : actual.Integers is null ? DType.Float64 : actual.DType);
        var b = expected.CastTo(complex ? DType.Complex128 : expected.Integers is null ? DType.Float64 : expected.DType);
        for (var i = 0; i < a.ElementCount; i++)
        {
            double x = a.Integers is { } ai ? ai[i] : a.Real![i], y = b.Integers is { } bi ? bi[i] : b.Real![i];
            double xi = a.Imaginary?[i] ?? 0, yi = b.Imaginary?[i] ?? 0;
            if ((x == y && xi == yi) || ((double.IsNaN(x) || double.IsNaN(xi)) && (double.IsNaN(y) || double.IsNaN(yi))))
                continue;
            var d = ExactHypot.Of(x - y, xi - yi);
            var r = d / ExactHypot.Of(y, yi);
            abs = double.IsNaN(d) || d > abs ? d : abs;
            rel = double.IsNaN(r) || r > rel ? r : rel;
        }
        return (abs, rel);
    }

    /// <summary>The loosest default tolerances of the two dtypes, as <c>torch.testing</c>'s <c>default_tolerances</c>.</summary>
    public static (double Rtol, double Atol) Defaults(DType actual, DType expected)
    {
        var x = CloseOptions.DefaultTolerances(actual);
        var y = CloseOptions.DefaultTolerances(expected);
        return (Math.Max(x.Rtol, y.Rtol), Math.Max(x.Atol, y.Atol));
    }

    private static CloseResult Attribute(CloseCheck check, string name, string actual, string expected, double rtol, double atol) =>
        new(check, $"The values for attribute '{name}' do not match: {actual} != {expected}.", rtol, atol);

    // ---- isclose ---------------------------------------------------------------------------------------------

    private static bool IsClose(TensorOperand a, TensorOperand b, int i, DType dtype, double rtol, double atol, bool equalNan, ComparisonSemantics semantics,
                                TorchOneLoops? positions)
    {
        var n = (int)a.ElementCount;
        var tolerant = rtol != 0 || atol != 0;
        switch (dtype.Kind)
        {
            case DTypeKind.Float:
            {
                double x = a.Real![i], y = b.Real![i];
                if (x == y || (equalNan && double.IsNaN(x) && double.IsNaN(y)))
                    return true;
                return tolerant && WithinFloat(Kinds.Float(dtype), x, y, rtol, atol);
            }
            case DTypeKind.Complex:
            {
                double xr = a.Real![i], xi = a.Imaginary![i], yr = b.Real![i], yi = b.Imaginary![i];
                if ((xr == yr && xi == yi) || (equalNan && (double.IsNaN(xr) || double.IsNaN(xi)) && (double.IsNaN(yr) || double.IsNaN(yi))))
                    return true;
                if (!tolerant)
                    return false;
                var kind = Kinds.Float(dtype);
                var (pr, pi) = Complex.Scale(kind, rtol, yr, yi);
                // |rtol * b| and |a - b| each run over their own result's memory (positions: see TorchOneLoops).
                var allowed = Rounding.Convert(kind, Rounding.Convert(kind, atol) + Complex.Abs(kind, pr, pi, semantics, positions?.Scaled[i] ?? i, n));
                var (dr, di) = Complex.Subtract(kind, xr, xi, yr, yi);
                var error = Complex.Abs(kind, dr, di, semantics, positions?.Difference[i] ?? i, n);
                return double.IsFinite(error) && error <= allowed;
            }
            default:
            {
                long x = a.Integers![i], y = b.Integers![i];
                if (x == y)
                    return true;
                if (!tolerant)
                    return false;
                // With tolerances, integers and bools are compared as float32 (the default dtype): both operands
                // are converted, so neighbours above 2^24 can be close and nothing wraps.
                return WithinFloat32(FloatKind.Float32, x, y, rtol, atol);
            }
        }
    }

    private static bool WithinFloat(FloatKind kind, double x, double y, double rtol, double atol)
    {
        if (kind == FloatKind.Float64)
        {
            var allowed = atol + Math.Abs(rtol * y);
            var error = Math.Abs(x - y);
            return double.IsFinite(error) && error <= allowed;
        }
        return WithinFloat32(kind, (float)x, (float)y, rtol, atol);
    }

    private static bool WithinFloat32(FloatKind kind, float fx, float fy, double rtol, double atol)
    {
        // float32 ops; float16/bfloat16 compute each op in float and round the result to the dtype. The scalar rtol
        // multiplies as a float ("opmath"); atol is first converted to the dtype (measured against both PyTorch releases).
        float fr = (float)rtol, fa = Rounding.To(kind, (float)atol);
        var allowedF = Rounding.To(kind, fa + Math.Abs(Rounding.To(kind, fr * fy)));
        var errorF = Math.Abs(Rounding.To(kind, fx - fy));
        return float.IsFinite(errorF) && errorF <= allowedF;
    }

    private static double Hypot(double x, double y) => ExactHypot.Of(x, y);

    // ---- statistics ------------------------------------------------------------------------------------------

    private static CloseResult TensorFailure(TensorOperand a, TensorOperand b, bool[] close, int mismatches, DType dtype,
                                             double rtol, double atol, ComparisonSemantics semantics, TorchOneLoops? positions)
    {
        var n = close.Length;
        var absolute = new double[n];
        var relative = new double[n];
        var integral = dtype.Kind is DTypeKind.Bool or DTypeKind.SignedInteger or DTypeKind.UnsignedInteger;
        for (var i = 0; i < n; i++)
        {
            if (close[i])
                continue; // matches count as 0
            switch (dtype.Kind)
            {
                case DTypeKind.Float:
                {
                    var kind = Kinds.Float(dtype);
                    double x = a.Real![i], y = b.Real![i];
                    if (kind == FloatKind.Float64)
                    {
                        absolute[i] = Math.Abs(x - y);
                        relative[i] = absolute[i] / Math.Abs(y);
                    }
                    else
                    {
                        var d = Math.Abs(Rounding.To(kind, (float)x - (float)y));
                        absolute[i] = d;
                        relative[i] = Rounding.To(kind, d / Math.Abs((float)y));
                    }
                    break;
                }
                case DTypeKind.Complex:
                {
                    double xr = a.Real![i], xi = a.Imaginary![i], yr = b.Real![i], yi = b.Imaginary![i];
                    var kind = Kinds.Float(dtype);
                    var (dr, di) = Complex.Subtract(kind, xr, xi, yr, yi);
                    absolute[i] = Complex.Abs(kind, dr, di, semantics, i, n);
                    // A strided view of expected (flatten gave a view, not a copy) takes the scalar loop throughout.
                    var place = positions is { ExpectedFlatIsStrided: true } ? n : i;
                    relative[i] = Rounding.Convert(kind, absolute[i] / Complex.Abs(kind, yr, yi, semantics, place, n));
                    break;
                }
                default:
                {
                    // Integers and bools in int64 (PyTorch upcasts them); the ratio of two int64 tensors is float32.
                    long x = a.Integers![i], y = b.Integers![i];
                    var d = unchecked(x - y);
                    var ad = d < 0 ? unchecked(-d) : d;
                    var ay = y < 0 ? unchecked(-y) : y;
                    absolute[i] = ad;
                    relative[i] = (float)ad / (float)ay;
                    break;
                }
            }
        }
        var (maxAbs, absAt) = integral ? MaxInteger(a, b, close) : Max(absolute);
        var (maxRel, relAt) = Max(relative);
        var absIndex = Unravel(absAt, a.Shape);
        var relIndex = Unravel(relAt, a.Shape);
        var absText = integral ? PythonFormat.Int((Int128)(long)maxAbs) : PythonFormat.Float(maxAbs);
        if (integral)
        {
            // Re-read the exact int64 (a double may not hold it).
            long x = a.Integers![absAt], y = b.Integers![absAt];
            var d = close[absAt] ? 0 : unchecked(x - y);
            absText = PythonFormat.Int(d < 0 ? unchecked(-d) : d);
        }
        _ = semantics;
        var extra = $"Mismatched elements: {mismatches} / {n} ({PythonFormat.Percent((double)mismatches / n)})";
        var message = Message("Tensor-likes", extra, absText, PythonFormat.Tuple(absIndex), PythonFormat.Float(maxRel), PythonFormat.Tuple(relIndex), rtol, atol);
        return new CloseResult(CloseCheck.Values, message, rtol, atol)
        {
            ElementCount = n,
            MismatchCount = mismatches,
            GreatestAbsoluteDifference = maxAbs,
            GreatestAbsoluteDifferenceIndex = absIndex,
            GreatestRelativeDifference = maxRel,
            GreatestRelativeDifferenceIndex = relIndex,
        };
    }

    /// <summary><c>torch.max(t, 0)</c> on a 1-d tensor: NaN is greatest; the first index among equals.</summary>
    private static (double Value, int Index) Max(double[] values)
    {
        var best = values[0];
        var at = 0;
        for (var i = 1; i < values.Length && !double.IsNaN(best); i++)
        {
            if (double.IsNaN(values[i]) || values[i] > best)
            {
                best = values[i];
                at = i;
            }
        }
        return (best, at);
    }

    /// <summary>The greatest |a − b| in int64 arithmetic (wrapping as PyTorch's does), first index among equals.</summary>
    private static (double Value, int Index) MaxInteger(TensorOperand a, TensorOperand b, bool[] close)
    {
        var best = long.MinValue; // |long.MinValue| wraps to itself, so every value takes part, as in torch.max
        var at = -1;
        for (var i = 0; i < close.Length; i++)
        {
            var d = close[i] ? 0 : unchecked(a.Integers![i] - b.Integers![i]);
            var ad = d < 0 ? unchecked(-d) : d;
            if (ad > best || at < 0)
            {
                best = ad;
                at = i;
            }
        }
        return (best, at);
    }

    private static long[] Unravel(int flat, IReadOnlyList<long> shape)
    {
        var index = new long[shape.Count];
        long rest = flat;
        for (var d = shape.Count - 1; d >= 0; d--)
        {
            index[d] = rest % shape[d];
            rest /= shape[d];
        }
        return index;
    }

    private static CloseResult ScalarFailure(TensorOperand a, TensorOperand b, DType dtype, double rtol, double atol, ComparisonSemantics semantics)
    {
        // PyTorch reports 0-d failures with Python numbers: .item() values and Python arithmetic (doubles, exact ints).
        string absText, relText, expectedText, actualText;
        double absolute, relative;
        switch (dtype.Kind)
        {
            case DTypeKind.Float:
            {
                double x = a.Real![0], y = b.Real![0];
                absolute = Math.Abs(x - y);
                relative = y == 0 ? double.PositiveInfinity : absolute / Math.Abs(y);
                absText = PythonFormat.Float(absolute);
                (actualText, expectedText) = (PythonFormat.Float(x), PythonFormat.Float(y));
                break;
            }
            case DTypeKind.Complex:
            {
                var x = new SysComplex(a.Real![0], a.Imaginary![0]);
                var y = new SysComplex(b.Real![0], b.Imaginary![0]);
                absolute = Hypot(x.Real - y.Real, x.Imaginary - y.Imaginary);
                relative = y == SysComplex.Zero ? double.PositiveInfinity : absolute / Hypot(y.Real, y.Imaginary);
                absText = PythonFormat.Float(absolute);
                (actualText, expectedText) = (PythonFormat.Complex(x), PythonFormat.Complex(y));
                break;
            }
            default:
            {
                Int128 x = a.Integers![0], y = b.Integers![0];
                var d = Int128.Abs(x - y);
                absolute = (double)d;
                relative = y == 0 ? double.PositiveInfinity : TrueDivide(d, Int128.Abs(y));
                absText = PythonFormat.Int(d);
                if (dtype == DType.Bool)
                    (actualText, expectedText) = (x != 0 ? "True" : "False", y != 0 ? "True" : "False");
                else
                    (actualText, expectedText) = (PythonFormat.Int(x), PythonFormat.Int(y));
                break;
            }
        }
        relText = PythonFormat.Float(relative);
        var extra = semantics == ComparisonSemantics.PyTorch2 ? $"Expected {expectedText} but got {actualText}." : null;
        var message = Message("Scalars", extra, absText, null, relText, null, rtol, atol);
        return new CloseResult(CloseCheck.Values, message, rtol, atol)
        {
            ElementCount = 1,
            MismatchCount = 1,
            GreatestAbsoluteDifference = absolute,
            GreatestRelativeDifference = relative,
        };
    }

    /// <summary>Complex arithmetic as PyTorch's kernels do it, in the components' precision.</summary>
    /// <summary>
    /// Where each element falls in PyTorch 1.13's loops over <c>rtol * other</c> and <c>self - other</c> in
    /// <c>torch.isclose</c> (after <c>_promote_for_comparison</c>), for <see cref="Complex.Abs"/>. Each result is
    /// allocated dense in the order TensorIterator takes from its inputs' strides (<c>reorder_dimensions</c>: the
    /// smallest stride innermost, ties to the smaller size, the first operand that decides wins, ambiguous pairs left
    /// as they are), and <c>abs</c> runs over that memory in one loop. The statistics flatten first: <c>a - b</c> is then
    /// a dense 1-D result (the logical index is the position), and <c>|b|</c> runs the vectorised loop only when the
    /// flattened <c>b</c> is contiguous; a strided view (flatten returns a view where the strides allow one) takes the
    /// scalar loop (hypot) for every element. Not modelled: loops split over threads (2^15 elements or more).
    /// </summary>
    private sealed class TorchOneLoops
    {
        /// <summary>Element i's place in the memory of <c>rtol * other</c> (and of <c>self - other</c>).</summary>
        public required int[] Scaled { get; init; }

        public required int[] Difference { get; init; }

        /// <summary><c>expected.flatten()</c> is a non-contiguous view (so <c>torch.abs</c> of it is never vectorised).</summary>
        public required bool ExpectedFlatIsStrided { get; init; }

        public static TorchOneLoops Of(TensorOperand actual, TensorOperand expected, DType compute)
        {
            var self = PromotedStrides(actual, compute);
            var other = PromotedStrides(expected, compute);
            return new TorchOneLoops
            {
                Scaled = Positions(actual.Shape, [other]),
                Difference = Positions(actual.Shape, [self, other]),
                ExpectedFlatIsStrided = FlattensToStridedView(expected.Shape, other),
            };
        }

        // flatten() is a view when the dimensions larger than 1 are nested (each stride the next one's stride times its
        // size); that view is contiguous only with an innermost stride of 1.
        private static bool FlattensToStridedView(IReadOnlyList<long> shape, long[] strides)
        {
            var dims = Enumerable.Range(0, shape.Count).Where(d => shape[d] > 1).ToArray();
            if (dims.Length == 0 || shape.Any(size => size == 0))
                return false;
            for (var k = 0; k + 1 < dims.Length; k++)
            {
                if (strides[dims[k]] != strides[dims[k + 1]] * shape[dims[k + 1]])
                    return false; // not viewable: flatten copies into a contiguous tensor
            }
            return strides[dims[^1]] != 1;
        }

        // .to(dtype) (1.13's promotions) keeps a non-overlapping and dense operand's strides and makes any other
        // C-contiguous; an operand already of the dtype is not copied.
        private static long[] PromotedStrides(TensorOperand x, DType compute)
        {
            var strides = x.Strides.ToArray();
            return x.DType == compute || IsNonOverlappingAndDense(x.Shape, strides) ? strides : TensorOperand.CStrides(x.Shape);
        }

        private static bool IsNonOverlappingAndDense(IReadOnlyList<long> shape, long[] strides)
        {
            long required = 1;
            foreach (var d in Enumerable.Range(0, shape.Count).Where(d => shape[d] > 1).OrderBy(d => strides[d]))
            {
                if (strides[d] != required)
                    return false;
                required *= shape[d];
            }
            return true;
        }

        private static int[] Positions(IReadOnlyList<long> shape, long[][] operands)
        {
            var rank = shape.Count;
            var perm = Enumerable.Range(0, rank).Reverse().ToArray(); // perm[0]: the innermost dimension
            for (var i = 1; i < rank; i++)
            {
                var dim1 = i;
                for (var dim0 = i - 1; dim0 >= 0; dim0--)
                {
                    var comparison = ShouldSwap(perm[dim0], perm[dim1]);
                    if (comparison > 0)
                    {
                        (perm[dim0], perm[dim1]) = (perm[dim1], perm[dim0]);
                        dim1 = dim0;
                    }
                    else if (comparison < 0)
                        break;
                }
            }
            var dense = new long[rank];
            long step = 1;
            foreach (var d in perm)
            {
                dense[d] = step;
                step *= shape[d];
            }
            var count = checked((int)step);
            var positions = new int[count];
            var index = new long[rank];
            for (var i = 0; i < count; i++)
            {
                long place = 0;
                for (var d = 0; d < rank; d++)
                    place += index[d] * dense[d];
                positions[i] = (int)place;
                for (var d = rank - 1; d >= 0 && ++index[d] == shape[d]; d--)
                    index[d] = 0;
            }
            return positions;

            int ShouldSwap(int dim0, int dim1)
            {
                foreach (var strides in operands)
                {
                    long stride0 = strides[dim0], stride1 = strides[dim1];
                    if (stride0 == 0 || stride1 == 0)
                        continue;
                    if (stride0 != stride1)
                        return stride0 < stride1 ? -1 : 1;
                    if (shape[dim0] > shape[dim1])
                        return 1;
                }
                return 0;
            }
        }
    }

    private static class Complex
    {
        /// <summary><c>rtol * z</c>: a complex product with (rtol, 0), so an infinite component gives a NaN.</summary>
        public static (double Re, double Im) Scale(FloatKind kind, double r, double re, double im)
        {
            if (kind == FloatKind.Float64)
                return ((r * re) - (0.0 * im), (r * im) + (0.0 * re));
            var f = (float)r;
            return (((f * (float)re) - (0f * (float)im)), ((f * (float)im) + (0f * (float)re)));
        }

        /// <summary><c>a - b</c>, which PyTorch computes as <c>a + (-1 + 0j) * b</c> (an infinite component of b gives a NaN).</summary>
        public static (double Re, double Im) Subtract(FloatKind kind, double ar, double ai, double br, double bi)
        {
            if (kind == FloatKind.Float64)
                return (ar + (-br - (0.0 * bi)), ai + (-bi + (0.0 * br)));
            float xr = (float)ar, xi = (float)ai, yr = (float)br, yi = (float)bi;
            return (xr + (-yr - (0f * yi)), xi + (-yi + (0f * yr)));
        }

        /// <summary>
        /// |z|: PyTorch 2 rounds sqrt(re² + im²) once (hypot); PyTorch 1.13's vectorised kernel squares, adds and
        /// takes the square root in the components' precision (so it overflows above ~1e154 / ~1e19, and |inf + nan j| is NaN).
        /// </summary>
        public static double Abs(FloatKind kind, double re, double im, ComparisonSemantics semantics, int position, int count)
        {
            // PyTorch 1.13 (AVX2 kernels) vectorises |z| over chunks of 4 complex128 / 8 complex64 elements and
            // computes the remainder with std::abs (hypot): the same value gets different magnitudes by its position
            // in the loop, which is its place in the memory of the tensor |z| is taken of (TorchOneLoops).
            var chunk = kind == FloatKind.Float64 ? 4 : 8;
            if (semantics == ComparisonSemantics.PyTorch1 && position < count - (count % chunk))
            {
                if (kind == FloatKind.Float64)
                    return Math.Sqrt((re * re) + (im * im));
                float fr = (float)re, fi = (float)im;
                return MathF.Sqrt((fr * fr) + (fi * fi));
            }
            return kind == FloatKind.Float64 ? ExactHypot.Of(re, im) : ExactHypot.OfSingle((float)re, (float)im);
        }
    }

    /// <summary>Python's int / int: the quotient correctly rounded (a double division rounds twice above 2^53).</summary>
    private static double TrueDivide(Int128 numerator, Int128 denominator)
    {
        const int Shift = 128;
        var q = BigInteger.DivRem((BigInteger)numerator << Shift, (BigInteger)denominator, out var remainder);
        var negative = q.Sign < 0;
        q = BigInteger.Abs(q);
        // Round to 53 bits by hand (BigInteger's conversion to double truncates): keep 54 bits, then half-even with
        // the dropped bits and the division's remainder as the sticky part.
        var drop = (int)q.GetBitLength() - 54;
        var sticky = !remainder.IsZero;
        if (drop > 0)
        {
            sticky |= !(q & ((BigInteger.One << drop) - 1)).IsZero;
            q >>= drop;
        }
        else
        {
            drop = 0;
        }
        var top = (long)q;
        var mantissa = top >> 1;
        if ((top & 1) == 1 && (sticky || (mantissa & 1) == 1))
            mantissa++;
        var result = Math.ScaleB(mantissa, drop + 1 - Shift);
        return negative ? -result : result;
    }

    private static string Message(string what, string? extra, string abs, string? absIndex, string rel, string? relIndex, double rtol, double atol)
    {
        var equality = rtol == 0 && atol == 0;
        var sb = new System.Text.StringBuilder();
        sb.Append(what).Append(" are not ").Append(equality ? "equal" : "close").Append("!\n\n");
        if (!string.IsNullOrWhiteSpace(extra))
            sb.Append(extra.Trim()).Append('\n');
        Line("absolute", abs, absIndex, atol);
        Line("relative", rel, relIndex, rtol);
        return sb.ToString().Trim();

        void Line(string type, string diff, string? index, double tol)
        {
            sb.Append(index is null ? $"{char.ToUpperInvariant(type[0])}{type[1..]} difference: {diff}" : $"Greatest {type} difference: {diff} at index {index}");
            if (!equality)
                sb.Append(" (up to ").Append(PythonFormat.Float(tol)).Append(" allowed)");
            sb.Append('\n');
        }
    }
}
