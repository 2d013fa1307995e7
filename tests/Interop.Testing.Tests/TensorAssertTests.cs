// The assertion's API on .NET values (no Python, no TorchSharp): verdicts, PyTorch's message, the constraint.
using Interop.DTypes;
using NUnit.Framework.Constraints;
using NUnit.Framework.Internal;

namespace Interop.Testing.Tests;

[TestFixture]
public class TensorAssertTests
{
    [Test]
    public void Close_arrays_pass_and_a_difference_beyond_the_float32_default_fails_with_PyTorchs_statistics()
    {
        var expected = new float[,] { { 1, 2 }, { 3, 4 } };
        var close = new float[,] { { 1, 2 }, { 3, 4.00001f } };       // within 1e-5 + 1.3e-6 * 4
        var far = new float[,] { { 1, 2.5f }, { 3, 4 } };
        TensorAssert.Close(close, expected);
        var e = Assert.Throws<AssertionException>(() => TensorAssert.Close(far, expected))!;
        Assert.That(e.Message, Is.EqualTo(
            "Tensor-likes are not close!\n\nMismatched elements: 1 / 4 (25.0%)\n" +
            "Greatest absolute difference: 0.5 at index (0, 1) (up to 1e-05 allowed)\n" +
            "Greatest relative difference: 0.25 at index (0, 1) (up to 1.3e-06 allowed)"));
    }

    [Test]
    public void The_constraint_takes_tolerances_equal_nan_and_reports_the_failed_check()
    {
        double[] expected = [1, double.NaN, 3];
        double[] actual = [1.05, double.NaN, 3];
        Assert.That(actual, TensorIs.CloseTo(expected).Within(0, 0.1).EqualNan());
        Assert.That(actual, Is.Not.Null.And.Not.Matches(TensorIs.CloseTo(expected).Within(0, 0.1)), "NaN differs from NaN without EqualNan");
        var result = TensorIs.CloseTo(expected).ApplyTo(new float[] { 1, 2, 3 });
        Assert.That(result.Status, Is.EqualTo(ConstraintStatus.Failure));
        var writer = new TextMessageWriter();
        result.WriteMessageTo(writer);
        Assert.That(writer.ToString(), Does.Contain("The values for attribute 'dtype' do not match: torch.float32 != torch.float64."));
        Assert.That(new float[] { 1, 2, 3 }, TensorIs.CloseTo(new double[] { 1, 2, 3 }).IgnoringDtype());
    }

    [Test]
    public void Shapes_must_match_without_broadcasting_and_strides_only_when_asked()
    {
        var r = TensorAssert.Compare(new float[3], new float[1, 3]);
        Assert.That(r.FailedCheck, Is.EqualTo(CloseCheck.Shape));
        Assert.That(r.Message, Is.EqualTo("The values for attribute 'shape' do not match: torch.Size([3]) != torch.Size([1, 3])."));
        // The same values, one transposed in memory: equal unless strides are checked.
        var storage = new byte[6 * 4];
        var values = new float[] { 1, 2, 3, 4, 5, 6 };
        Buffer.BlockCopy(values, 0, storage, 0, storage.Length);
        var transposed = TensorOperand.FromStorage(storage, DType.Float32, [3, 2], [1, 3], 0);
        var contiguous = TensorOperand.FromArray(new float[,] { { 1, 4 }, { 2, 5 }, { 3, 6 } });
        Assert.That(TensorAssert.Compare(transposed, contiguous).Passed, Is.True);
        Assert.That(TensorAssert.Compare(transposed, contiguous, new CloseOptions { CheckStride = true }).FailedCheck, Is.EqualTo(CloseCheck.Stride));
    }

    [Test]
    public void Default_tolerances_are_PyTorchs_per_dtype_and_integers_compare_exactly()
    {
        Assert.Multiple(() =>
        {
            Assert.That(CloseOptions.DefaultTolerances(DType.Float16), Is.EqualTo((0.001, 1e-5)));
            Assert.That(CloseOptions.DefaultTolerances(DType.BFloat16), Is.EqualTo((0.016, 1e-5)));
            Assert.That(CloseOptions.DefaultTolerances(DType.Float32), Is.EqualTo((1.3e-6, 1e-5)));
            Assert.That(CloseOptions.DefaultTolerances(DType.Float64), Is.EqualTo((1e-7, 1e-7)));
            Assert.That(CloseOptions.DefaultTolerances(DType.Complex64), Is.EqualTo((1.3e-6, 1e-5)));
            Assert.That(CloseOptions.DefaultTolerances(DType.Int32), Is.EqualTo((0.0, 0.0)));
        });
        var e = Assert.Throws<AssertionException>(() => TensorAssert.Close(new[] { 1, 2, 3 }, new[] { 1, 2, 4 }))!;
        Assert.That(e.Message, Does.StartWith("Tensor-likes are not equal!"));
        Assert.That(e.Message, Does.Contain("Greatest absolute difference: 1 at index (2,)").And.Not.Contain("allowed"));
    }

    [Test]
    public void Infinities_match_only_with_the_same_sign_and_signed_zeros_are_equal()
    {
        TensorAssert.Close(new[] { double.PositiveInfinity, -0.0 }, new[] { double.PositiveInfinity, 0.0 });
        var r = TensorAssert.Compare(new[] { double.PositiveInfinity }, new[] { double.NegativeInfinity });
        Assert.That(r.MismatchCount, Is.EqualTo(1));
        Assert.That(r.GreatestAbsoluteDifference, Is.EqualTo(double.PositiveInfinity));
    }

    [Test]
    public void One_tolerance_without_the_other_is_refused_as_PyTorch_refuses_it() =>
        Assert.Throws<ArgumentException>(() => TensorAssert.Compare(new float[1], new float[1], new CloseOptions { Rtol = 0.1 }));

    [Test]
    public void Spans_with_a_shape_and_tensor_spans_are_operands()
    {
        ReadOnlySpan<float> a = [1, 2, 3, 4, 5, 6];
        TensorAssert.Close(a, a, [2, 3]);
        var tensor = System.Numerics.Tensors.Tensor.Create(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        Assert.That(tensor, TensorIs.CloseTo(new float[,] { { 1, 2, 3 }, { 4, 5, 6 } }));
        Assert.Throws<ArgumentException>(() => TensorOperand.From("not a tensor"));
    }
    [Test]
    public void PyTorch1_takes_a_complex_magnitude_by_the_elements_place_in_memory_not_its_logical_index()
    {
        // Replayed from a pair the agreement test found (seed 1848157404, PyTorch 1.13 passed it): PyTorch 1.13's |z| for
        // the first 4 of 6 complex128 elements in a loop squares the parts (overflow above ~1e154), the rest use hypot.
        // The loop runs over memory: in a column-major (2, 3) tensor, element (0, 2) is 5th in memory, 3rd logically.
        var actual = new System.Numerics.Complex[] { new(1, 2), new(3, 4), new(1.627010486416853E+308, -166.93390615680406), new(5, 6), new(7, 8), new(9, 10) };
        var expected = (System.Numerics.Complex[])actual.Clone();
        expected[2] = new(1.6270108118190152E+308, -166.93390615680406);
        var options = new CloseOptions { Rtol = 2e-7, Atol = 2e-7, Semantics = ComparisonSemantics.PyTorch1 };
        // Logical (row-major) order of (2, 3) is 0..5; the column-major storage holds element (r, c) at r + 2 c.
        TensorOperand ColumnMajor(System.Numerics.Complex[] logical)
        {
            var storage = new byte[6 * 16];
            for (var r = 0; r < 2; r++)
                for (var c = 0; c < 3; c++)
                {
                    var z = logical[(r * 3) + c];
                    BitConverter.TryWriteBytes(storage.AsSpan((r + (2 * c)) * 16), z.Real);
                    BitConverter.TryWriteBytes(storage.AsSpan(((r + (2 * c)) * 16) + 8), z.Imaginary);
                }
            return TensorOperand.FromStorage(storage, DType.Complex128, [2, 3], [1, 2], 0);
        }
        var rowMajor = TensorAssert.Compare(TensorOperand.FromArray(To2D(actual)), TensorOperand.FromArray(To2D(expected)), options);
        var columnMajor = TensorAssert.Compare(ColumnMajor(actual), ColumnMajor(expected), options);
        Assert.Multiple(() =>
        {
            Assert.That(columnMajor.Passed, Is.True, "5th in memory: hypot, within tolerance (PyTorch 1.13 passed this pair)");
            Assert.That(rowMajor.Passed, Is.False, "3rd in memory: the vectorised square overflows to inf");
            Assert.That(rowMajor.Message, Does.Contain("Greatest absolute difference: inf at index (0, 2)"));
            Assert.That(TensorAssert.Compare(ColumnMajor(actual), ColumnMajor(expected), options with { Semantics = ComparisonSemantics.PyTorch2 }).Passed,
                Is.True, "PyTorch 2 uses hypot everywhere");
        });

        static System.Numerics.Complex[,] To2D(System.Numerics.Complex[] v) => new[,] { { v[0], v[1], v[2] }, { v[3], v[4], v[5] } };
    }
}
