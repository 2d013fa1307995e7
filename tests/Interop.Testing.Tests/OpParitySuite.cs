// The op-parity suite (issue 13, item 5): TorchSharp in this process, PyTorch in an isolated worker, each op on the
// same generated inputs in float32, float64 (float16 where both sides implement it) and three layouts, compared with
// assert_close's rules and PyTorch's default tolerances. The table is written to the test output and to
// parity-table.md in the test's work directory (docs/parity.md holds a copy).
using Interop.DTypes;
using Interop.TorchSharp;

namespace Interop.Testing.Tests;

[TestFixture]
[Category("torchsharp")]
[Category("isolated")]
[NonParallelizable]
public class OpParitySuite
{
    private ParityHarness? _harness;
    private readonly List<ParityResult> _results = [];

    [OneTimeSetUp]
    public void Start()
    {
        // Outside the code's control: TorchSharp's native library needs a newer libstdc++ than some hosts have.
        if (!TorchSharpSupport.IsAvailable)
            Assert.Ignore("TorchSharp cannot run in this environment: " + TorchSharpSupport.Problem);
        _harness = new ParityHarness(TestSessions.Isolated());
    }

    [OneTimeTearDown]
    public void Report()
    {
        if (_harness is null)
            return;
        var table = $"PyTorch {_harness.PyTorchVersion} (worker) vs TorchSharp {TorchSharpSupport.TorchSharpVersion} (libtorch {TorchSharpSupport.LibTorchVersion})\n\n" +
                    ParityHarness.Table(_results.OrderBy(r => Array.FindIndex(ParityOps.All, o => o.Name == r.Op)).ThenBy(r => r.DType.Name).ThenBy(r => r.Layout));
        TestContext.Out.WriteLine(table);
        File.WriteAllText(Path.Combine(TestContext.CurrentContext.WorkDirectory, "parity-table.md"), table);
        _harness.Dispose();
    }

    public static IEnumerable<TestCaseData> Cases() =>
        from op in ParityOps.All
        from dtype in ParityOps.DTypes(op)
        from layout in new[] { ParityLayout.Contiguous, ParityLayout.Transposed, ParityLayout.Strided }
        select new TestCaseData(op.Name, dtype.Name, layout).SetName($"{op.Name} {dtype.Name} {layout}");

    [TestCaseSource(nameof(Cases))]
    public void TorchSharp_agrees_with_PyTorch(string name, string dtypeName, ParityLayout layout)
    {
        var op = ParityOps.All.Single(o => o.Name == name);
        var result = _harness!.Run(op, DType.FromName(dtypeName)!, layout);
        lock (_results)
            _results.Add(result);
        Assert.That(result.Error, Is.Null, result.Row());
        Assert.That(result.Verdict.Passed, Is.True, result.Row() + "\n" + result.Verdict.Message);
    }
}
