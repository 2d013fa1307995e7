// The demo's model-reuse step: a torchvision model's weights in TorchSharp, outputs agree. Like the seed chain it runs
// in the demo's child process, which never imports Python torch: torchvision runs in an isolated worker.
using Interop.Sessions;
using Interop.TorchSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Interop.Cli;

/// <summary>What the model-reuse step observed (null Problem: it ran); the tests assert these facts.</summary>
public sealed record ModelReuseFacts(string? Problem, int Tensors, long Bytes, double MaxDifference, bool WithinTolerance);

/// <summary>Step 6 of the demo: torchvision's resnet18 built in Python with a seed, its weights in TorchSharp's TorchVision resnet18.</summary>
public static class ModelReuseDemo
{
    /// <summary>Runs the step, writing what happens to <paramref name="output"/>.</summary>
    public static ModelReuseFacts Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        output.WriteLine();
        output.WriteLine("Step 6. A torchvision model's weights in TorchSharp, outputs agree");
        if (!TorchSharpSupport.IsAvailable)
            return Skip(output, "TorchSharp cannot run here: " + TorchSharpSupport.Problem);
        using var session = PythonSession.Isolated();
        using (var util = session.Import("importlib.util"))
        using (var findSpec = util.GetAttr("find_spec"))
        using (var spec = findSpec.Call("torchvision"))
        {
            if (spec.IsNone)
                return Skip(output, "the worker's Python has no torchvision (Debian: apt-get install python3-torchvision)");
        }
        using (var torchPy = session.Import("torch"))
        using (var seed = torchPy.GetAttr("manual_seed"))
        using (seed.Call(0)) { }
        using var models = session.Import("torchvision.models");
        using var resnet18 = models.GetAttr("resnet18");
        using var built = resnet18.Call();
        using var pyModel = built.AsRef();
        using (var eval = pyModel.GetAttr("eval"))
        using (eval.Call()) { }
        output.WriteLine("  Python (worker): torch.manual_seed(0); m = torchvision.models.resnet18().eval()");

        using var scope = NewDisposeScope();
        var model = torchvision.models.resnet18();
        var result = model.LoadWeightsFrom(pyModel);
        model.eval();
        output.WriteLine($"  TorchSharp: torchvision.models.resnet18().LoadWeightsFrom(m): {result.TensorCount} tensors, {result.Bytes / 1e6:F1} MB (strict)");
        manual_seed(1);
        var x = randn(2, 3, 64, 64);
        var input = TensorArgument.Create<float>(x.reshape(-1).data<float>().ToArray(), x.shape);
        using var pyOut = pyModel.Call([input], new CallOptions { GradMode = GradMode.NoGrad });
        var expected = pyOut.ToTorchSharp(TorchSharpMemory.Copy);
        Tensor actual;
        using (no_grad())
            actual = model.call(x);
        var difference = (actual - expected).abs();
        var maxDifference = difference.max().item<float>();
        var within = difference.le(expected.abs() * 1.3e-6 + 1e-5).all().item<bool>();
        output.WriteLine($"  both in eval mode on the same [2, 3, 64, 64] batch: max |TorchSharp - PyTorch| = {maxDifference:G3}, " +
                         $"within torch.testing.assert_close's float32 tolerances: {(within ? "yes" : "NO")}");
        return new ModelReuseFacts(null, result.TensorCount, result.Bytes, maxDifference, within);
    }

    private static ModelReuseFacts Skip(TextWriter output, string why)
    {
        output.WriteLine("  skipped: " + why);
        return new ModelReuseFacts(why, 0, 0, double.NaN, false);
    }
}
