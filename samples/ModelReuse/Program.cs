// A torchvision model's weights in TorchSharp, outputs agree.
// Python (torch + torchvision) runs in an isolated worker process; TorchSharp runs here. The model is built in Python
// with a fixed seed (nothing is downloaded), its weights move into TorchSharp's TorchVision resnet18 in memory, both
// run in eval mode on the same batch, and the outputs are compared. Then one fine-tuning step in TorchSharp, and the
// weights go back into the Python model.
//
//   dotnet run --project samples/ModelReuse            (Debian 13 / any host where TorchSharp loads;
//   ./interop.sh shell -c 'dotnet run --project samples/ModelReuse'   on a Debian 12 host)
using Interop.Sessions;
using Interop.TorchSharp;
using TorchSharp;
using static TorchSharp.torch;

using var session = PythonSession.Isolated();
using var torchPy = session.Import("torch");
using (var seed = torchPy.GetAttr("manual_seed"))
using (seed.Call(0)) { }
using var models = session.Import("torchvision.models");
using var resnet18 = models.GetAttr("resnet18");
using var built = resnet18.Call();
// <readme>
using var pyModel = built.AsRef();                 // an nn.Module built in Python: torchvision.models.resnet18()
var model = torchvision.models.resnet18();         // TorchSharp's TorchVision
var result = model.LoadWeightsFrom(pyModel);       // parameters and buffers, in memory, PyTorch's load_state_dict rules
// </readme>
using (var eval = pyModel.GetAttr("eval"))
using (eval.Call()) { }
model.eval();
Console.WriteLine($"Loaded {result.TensorCount} tensors ({result.Bytes / 1e6:F1} MB) from Python's torchvision resnet18 into TorchSharp's.");

manual_seed(1);
using var x = randn(2, 3, 224, 224);
using var xFlat = x.reshape(-1);
var input = TensorArgument.Create<float>(xFlat.data<float>().ToArray(), x.shape);
using var pyOut = pyModel.Call([input], new CallOptions { GradMode = GradMode.NoGrad });
using var expected = pyOut.ToTorchSharp();                 // over the worker's shared memory, no copy
Tensor actual;
using (no_grad())
    actual = model.call(x);
var maxDiff = (actual - expected).abs().max().item<float>();
var agree = (actual - expected).abs().le(expected.abs() * 1.3e-6 + 1e-5).all().item<bool>();
Console.WriteLine($"Outputs [2, 1000]: max |TorchSharp - PyTorch| = {maxDiff:G3}; within assert_close's float32 tolerances: {agree}");

// Fine-tune one step in TorchSharp, then send the weights back.
model.train();
var optimizer = optim.SGD(model.parameters(), 0.01);
var loss = nn.functional.cross_entropy(model.call(x), tensor(new long[] { 3, 7 }));
loss.backward();
optimizer.step();
model.eval();
model.CopyWeightsTo(pyModel);
using var pyAfter = pyModel.Call([input], new CallOptions { GradMode = GradMode.NoGrad });
using var afterExpected = pyAfter.ToTorchSharp();
Tensor afterActual;
using (no_grad())
    afterActual = model.call(x);
Console.WriteLine($"After one SGD step in TorchSharp and CopyWeightsTo: max difference {(afterActual - afterExpected).abs().max().item<float>():G3}");
return agree ? 0 : 1;
