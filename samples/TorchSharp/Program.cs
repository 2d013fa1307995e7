// <readme>
using Interop.NumPy;
using Interop.TorchSharp;

using var a = NDArray.Evaluate("np.arange(12, dtype=np.float32).reshape(3, 4).T");
using var t = a.AsTorchSharp();        // zero-copy TorchSharp tensor (strides kept); holds the buffer until libtorch frees it
using var c = a.CopyToTorchSharp();    // a TorchSharp-owned copy
using var back = t.AsNumPy();          // ndarray over the tensor's memory; ToNumPy() copies
// </readme>

Console.WriteLine($"shape [{string.Join(", ", t.shape)}], strides [{string.Join(", ", t.stride())}], sum {t.sum().item<float>()}");
Console.WriteLine($"copy equal: {c.allclose(t)}; back as NumPy: {string.Join(' ', back.ToArray<float>())}");
