// The proof that TensorComparer's semantics are PyTorch's: generated pairs are checked by torch.testing.assert_close
// in a worker process (this environment's PyTorch: 1.13 on Debian 12, 2.6 on Debian 13) and by .NET here; the
// verdicts and the whole failure messages (which carry the check that failed, the mismatch count and percentage, the
// greatest absolute and relative differences and their indices, and the tolerances) must be identical.
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Interop.Testing.Tests;

[TestFixture]
[Category("torch")]
[Category("isolated")]
public class AgreementPropertyTests
{
    private const int Batches = 6;
    private const int PairsPerBatch = 2000;

    [Test]
    public void Verdicts_and_statistics_equal_torch_testing_assert_close_on_12000_generated_pairs()
    {
        using var session = TestSessions.Isolated();
        using var oracle = session.LoadFile(TestSessions.File("assert_close_oracle.py"));
        string torchVersion;
        using (var fn = oracle.GetAttr("version"))
        using (var v = fn.Call())
            torchVersion = v.AsString();
        var semantics = torchVersion.StartsWith("1.", StringComparison.Ordinal) ? ComparisonSemantics.PyTorch1 : ComparisonSemantics.PyTorch2;
        // A failure prints its seed; INTEROP_AGREEMENT_SEED=<seed> replays that run.
        var seed = int.TryParse(Environment.GetEnvironmentVariable("INTEROP_AGREEMENT_SEED"), out var fixedSeed) ? fixedSeed : TestContext.CurrentContext.Random.Next();

        var generator = new PairGenerator(seed);
        var total = 0;
        var failedByPyTorch = 0;
        var byCheck = new Dictionary<CloseCheck, int>();
        var disagreements = new List<string>();
        var pytorchErrors = new Dictionary<string, int>();
        using var check = oracle.GetAttr("check");
        for (var batch = 0; batch < Batches; batch++)
        {
            var cases = Enumerable.Range(0, PairsPerBatch).Select(_ => generator.Next()).ToArray();
            var (blob, meta) = Encode(cases);
            string[] verdicts;
            using (var result = check.Call(blob, meta))
                verdicts = JsonSerializer.Deserialize<string?[]>(result.AsString())!.Select(s => s ?? "").ToArray();
            for (var i = 0; i < cases.Length; i++)
            {
                var c = cases[i];
                var mine = TensorComparer.Compare(c.Actual.ToOperand(), c.Expected.ToOperand(), c.Options with { Semantics = semantics });
                var theirs = verdicts[i];
                total++;
                if (theirs.Length > 0)
                    failedByPyTorch++;
                byCheck[mine.FailedCheck] = byCheck.GetValueOrDefault(mine.FailedCheck) + 1;
                if (theirs.StartsWith('!'))
                {
                    // PyTorch raised while building its report (Python's abs(complex) overflows for huge 0-d complex
                    // values); the verdict, a failure, must still agree.
                    pytorchErrors[theirs] = pytorchErrors.GetValueOrDefault(theirs) + 1;
                    if (mine.Passed)
                        disagreements.Add($"case {batch}/{i} {Describe(c)}\n  PyTorch: {theirs}\n  .NET:    (passed)");
                }
                else if ((mine.Message ?? "") != theirs)
                    disagreements.Add($"case {batch}/{i} {Describe(c)}\n  PyTorch: {Show(theirs)}\n  .NET:    {Show(mine.Message)}");
            }
        }
        TestContext.Out.WriteLine($"torch {torchVersion} ({semantics}), seed {seed}: {total} pairs, {failedByPyTorch} failed assert_close, " +
                                  $"{disagreements.Count} disagreements; .NET verdicts: {string.Join(", ", byCheck.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}"))}" +
                                  (pytorchErrors.Count == 0 ? "" : $"; PyTorch raised instead of reporting: {string.Join("; ", pytorchErrors.Select(k => $"{k.Value}x {k.Key}"))}"));
        Assert.That(total, Is.GreaterThanOrEqualTo(10_000));
        Assert.That(failedByPyTorch, Is.InRange(total / 10, total * 9 / 10), "the generator should give both verdicts often");
        Assert.That(disagreements, Is.Empty, $"seed {seed}: {disagreements.Count} of {total} disagree; first:\n" + string.Join("\n", disagreements.Take(8)));
    }

    private static string Show(string? message) => string.IsNullOrEmpty(message) ? "(passed)" : message.Replace("\n", " | ", StringComparison.Ordinal);

    private static string Describe(CloseCase c) =>
        $"{c.Actual.DType}{Shape(c.Actual)} vs {c.Expected.DType}{Shape(c.Expected)} rtol={c.Options.Rtol} atol={c.Options.Atol} " +
        $"equal_nan={c.Options.EqualNan} check_dtype={c.Options.CheckDtype} check_stride={c.Options.CheckStride}\n" +
        $"  actual   {Values(c.Actual)}\n  expected {Values(c.Expected)}";

    private static string Shape(OperandSpec s) => "(" + string.Join(", ", s.Shape) + ")";

    private static string Values(OperandSpec s)
    {
        var o = s.ToOperand();
        IEnumerable<string> items = o.Integers is not null ? o.Integers.Select(v => v.ToString(CultureInfo.InvariantCulture))
            : o.Imaginary is not null ? o.Real!.Zip(o.Imaginary, (r, i) => $"{r:R}{(i < 0 ? "" : "+")}{i:R}j")
            : o.Real!.Select(v => v.ToString("R", CultureInfo.InvariantCulture));
        return "[" + string.Join(", ", items.Take(12)) + (o.ElementCount > 12 ? ", ..." : "") + "]";
    }

    private static (byte[] Blob, string Meta) Encode(CloseCase[] cases)
    {
        var blob = new MemoryStream();
        var meta = new StringBuilder("[");
        foreach (var c in cases)
        {
            if (meta.Length > 1)
                meta.Append(',');
            meta.Append("{\"a\":").Append(Operand(c.Actual, blob)).Append(",\"e\":").Append(Operand(c.Expected, blob));
            meta.Append(",\"rtol\":").Append(c.Options.Rtol is { } r ? r.ToString("R", CultureInfo.InvariantCulture) : "null");
            meta.Append(",\"atol\":").Append(c.Options.Atol is { } a ? a.ToString("R", CultureInfo.InvariantCulture) : "null");
            meta.Append(",\"equal_nan\":").Append(c.Options.EqualNan ? "true" : "false");
            meta.Append(",\"check_dtype\":").Append(c.Options.CheckDtype ? "true" : "false");
            meta.Append(",\"check_stride\":").Append(c.Options.CheckStride ? "true" : "false").Append('}');
        }
        return (blob.ToArray(), meta.Append(']').ToString());
    }

    private static string Operand(OperandSpec s, MemoryStream blob)
    {
        var at = blob.Length;
        blob.Write(s.Storage);
        return FormattableString.Invariant(
            $"{{\"dtype\":\"{s.DType.Name}\",\"at\":{at},\"nbytes\":{s.Storage.Length},\"shape\":[{string.Join(",", s.Shape)}],\"strides\":[{string.Join(",", s.Strides)}],\"offset\":{s.Offset}}}");
    }
}
