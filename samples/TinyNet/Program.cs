// <readme>
using Interop.Sessions;

using var session = PythonSession.InProcess();                       // this process's Python (no TorchSharp here)
using var module = session.LoadFile(Path.Combine(AppContext.BaseDirectory, "tiny_net.py")); // deployed beside the app
using var build = module.GetAttr("build");
using var net = build.Call(7);                                       // an nn.Module, kept in Python
using var y = net.AsRef().Call([new float[,] { { 0.5f, -1, 2, 0 } }],
                               new CallOptions { GradMode = GradMode.InferenceMode });
ReadOnlySpan<float> logits = y.AsReadOnlySpan<float>();              // zero-copy view of the result tensor
// </readme>

Console.WriteLine($"logits: [{string.Join(", ", logits.ToArray().Select(v => v.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]");
