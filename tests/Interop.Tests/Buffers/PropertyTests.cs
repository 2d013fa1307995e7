using System.Diagnostics;
using CsCheck;
using Interop.Diagnostics;
using Interop.DTypes;

namespace Interop.Tests.Buffers;

/// <summary>Random dtype, shape, slicing, transposition, byte order and alignment: .NET must agree with NumPy.</summary>
[TestFixture]
[Category("numpy")]
public class PropertyTests
{
    private static readonly DType[] s_dtypes = NumPyOracle.NumPyDTypes.ToArray();

    /// <summary>One randomly derived array, as the Python expression that builds it.</summary>
    private sealed record ArraySpec(DType DType, string Expression)
    {
        public override string ToString() => $"{DType.Name}: {Expression}";
    }

    private static readonly Gen<ArraySpec> s_specs =
        from dtype in Gen.Int[0, s_dtypes.Length - 1]
        from shape in Gen.Int[0, 5].Array[0, 4]
        from flags in Gen.Int[0, 3]
        from offset in Gen.Int[0, 2]
        from steps in Gen.Int[0, 4].Array[shape.Length]
        from starts in Gen.Int[0, 1].Array[shape.Length]
        from permutation in Gen.Int[0, 23]
        select Build(s_dtypes[dtype], shape, flags, offset, steps, starts, permutation);

    private static ArraySpec Build(DType dtype, int[] shape, int flags, int offset, int[] steps, int[] starts, int permutation)
    {
        var e = $"values('{dtype.NumPyName}', ({string.Concat(shape.Select(d => NumPyOracle.Int(d) + ", "))}))";
        var (fortran, bigEndian) = ((flags & 1) != 0, (flags & 2) != 0);
        if (fortran)
            e = $"np.asfortranarray({e})";
        if (bigEndian)
            e = $"big_endian({e})";
        // offset 1: misaligned for every multi-byte dtype; offset 2: half an item (aligned for complex64 only).
        if (offset == 1)
            e = $"misaligned({e})";
        else if (offset == 2)
            e = $"misaligned({e}, max(1, np.dtype('{dtype.NumPyName}').itemsize // 2))";
        if (shape.Length > 0 && steps.Any(s => s != 0))
        {
            int[] stepChoices = [1, 2, -1, -2, 3];
            var slices = shape.Select((_, i) => steps[i] == 0 ? ":" : $"{(starts[i] == 0 ? "" : "1")}::{stepChoices[steps[i]]}");
            e = $"({e})[{string.Join(", ", slices)}]";
        }
        if (shape.Length > 1 && permutation != 0)
        {
            // Lehmer code: permutation number -> axes order.
            var axes = Enumerable.Range(0, shape.Length).ToList();
            var order = new List<int>();
            var code = permutation;
            for (var n = shape.Length; n > 0; n--)
            {
                order.Add(axes[code % n]);
                axes.RemoveAt(code % n);
                code /= n;
            }
            e = $"({e}).transpose({string.Join(", ", order)})";
        }
        return new ArraySpec(dtype, e);
    }

    [Test]
    public void Random_arrays_convert_exactly_as_numpy_says()
    {
        var before = LiveObjects.PythonBuffers;
        var clock = Stopwatch.StartNew();
        var kinds = new HashSet<string>();
        s_specs.Sample(spec =>
        {
            var (array, facts) = NumPyOracle.ArrayWithFacts(spec.Expression);
            using (array)
                Typed.Run(spec.DType, new OracleCheck(array, facts));
            lock (kinds)
                kinds.Add($"c={facts.CContiguous} aligned={facts.Aligned} native={facts.NativeOrder} negative={facts.HasNegativeStride}");
        }, iter: 1500, threads: 1);
        TestContext.Out.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; layout kinds seen: {kinds.Count}");
        Assert.Multiple(() =>
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(15)), "keep the property test short");
            Assert.That(kinds, Has.Count.GreaterThanOrEqualTo(8), "the generator must reach many kinds of layout");
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
        });
    }
}
