// Tensors over native or strided memory, and TorchSharp tensors, as session call arguments (issue 13, item 4).
using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Sessions;
using Interop.TorchSharp;
using TorchSharp;

namespace Interop.Testing.Tests;

[TestFixture]
[Category("torch")]
[Category("isolated")]
public class SessionArgumentTests
{
    private static PythonValue Identity(PythonSession session, object argument)
    {
        using var module = session.LoadFile(Path.Combine(AppContext.BaseDirectory, "interop_testing", "interop_parity.py"));
        using var run = module.GetAttr("run");
        return run.Call("lambda x: x", "contiguous", argument);
    }

    [Test]
    public void Strided_native_memory_reaches_the_worker_in_C_order_through_one_gather()
    {
        var storage = new float[] { 1, 2, 3, 4, 5, 6 }; // a 3x2 view with strides (1, 3) elements: the transpose of [[1,2,3],[4,5,6]]
        var pin = GCHandle.Alloc(storage, GCHandleType.Pinned);
        try
        {
            var argument = TensorArgument.FromMemory(pin.AddrOfPinnedObject(), DType.Float32, [3, 2], [4, 12], storage);
            Assert.That(argument.IsStrided, Is.True);
            using var session = TestSessions.Isolated();
            using var result = Identity(session, argument);
            Assert.That(result, TensorIs.CloseTo(new float[,] { { 1, 4 }, { 2, 5 }, { 3, 6 } }));
        }
        finally
        {
            pin.Free();
        }
    }

    [Test]
    [Category("torchsharp")]
    public void TorchSharp_tensors_are_call_arguments_as_they_are()
    {
        if (!TorchSharpSupport.IsAvailable)
            Assert.Ignore("TorchSharp cannot run in this environment: " + TorchSharpSupport.Problem);
        using var session = TestSessions.Isolated();
        using var scope = torch.NewDisposeScope();
        var matrix = torch.arange(12, dtype: torch.float32).reshape(3, 4);
        var transposed = matrix.t();
        var indices = torch.tensor(new long[] { 3, 1, 2 });
        using (var r = Identity(session, matrix))
            Assert.That(r, TensorIs.CloseTo(matrix));
        using (var r = Identity(session, transposed))
        {
            Assert.That(r.Shape, Is.EqualTo(new long[] { 4, 3 }));
            Assert.That(r, TensorIs.CloseTo(transposed));
        }
        using (var r = Identity(session, indices))
            Assert.That(r, TensorIs.CloseTo(new long[] { 3, 1, 2 }));
        Assert.That(matrix.AsArgument().IsStrided, Is.False, "a contiguous tensor is read in place");
        Assert.That(transposed.AsArgument().IsStrided, Is.True, "a transposed one is gathered straight into the request region");
    }

    [Test]
    [Category("torchsharp")]
    public void The_harness_reports_a_real_difference_as_a_failure_with_PyTorchs_statistics()
    {
        if (!TorchSharpSupport.IsAvailable)
            Assert.Ignore("TorchSharp cannot run in this environment: " + TorchSharpSupport.Problem);
        using var harness = new ParityHarness(TestSessions.Isolated());
        var wrong = new OpParity("relu-vs-gelu", "lambda x: F.relu(x)", t => torch.nn.functional.gelu(t[0]), ParityInput.Normal(4, 5));
        var result = harness.Run(wrong, DType.Float32, ParityLayout.Transposed);
        Assert.That(result.Passed, Is.False);
        Assert.That(result.Verdict.Message, Does.Contain("Mismatched elements:"));
        Assert.That(result.GreatestAbsoluteDifference, Is.GreaterThan(0.01));
        Assert.That(result.Row(), Does.Contain("**FAIL**"));
    }
}

[TestFixture]
[Category("torch")]
[Category("isolated")]
public class ConverterHookTests
{
    /// <summary>A tensor type the core library does not know.</summary>
    private sealed record ForeignTensor(double[] Values);

    [Test]
    public void A_registered_converter_makes_a_foreign_tensor_type_a_call_argument()
    {
        TensorArgument.RegisterConverter(v => v is ForeignTensor f ? TensorArgument.Create<double>(f.Values, 2, 2) : null);
        using var session = TestSessions.Isolated();
        using var module = session.LoadFile(Path.Combine(AppContext.BaseDirectory, "interop_testing", "interop_parity.py"));
        using var run = module.GetAttr("run");
        using var result = run.Call("lambda x: x * 2", "contiguous", new ForeignTensor([1, 2, 3, 4]));
        Assert.That(result, TensorIs.CloseTo(new double[,] { { 2, 4 }, { 6, 8 } }));
        Assert.That(TensorArgument.TryCreate(new object(), out _), Is.False, "other objects stay unsupported");
    }
}
