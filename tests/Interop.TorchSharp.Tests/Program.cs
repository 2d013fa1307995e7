using Interop.Errors;
using Interop.Torch;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>
/// The child process of the libtorch conflict tests: loads one libtorch, then asks the library for the other.
/// Exit codes: 3 = LibTorchConflictException (message on stderr), 0 = the second load was allowed, 4 = another error.
/// A crash (the outcome without the guard) shows as a signal.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length != 2 || args[0] != "conflict")
        {
            Console.Error.WriteLine("usage: Interop.TorchSharp.Tests conflict torchsharp-first|python-first|shared|torchsharp-direct");
            return 2;
        }
        try
        {
            if (args[1] == "torchsharp-direct")
            {
                // TorchSharp used directly (its own libtorch loaded) before the library is asked: that is not a conflict.
                using var t = torch.ones(3);
                TorchSharpSupport.EnsureLoadable();
                Console.WriteLine($"TorchSharp used first, then the library: {t.sum().item<float>()}");
            }
            else if (args[1] == "shared")
            {
                // The shared setup: TorchSharp against Python torch's own libtorch (needs equal releases).
                TorchSharpSupport.UseSharedLibTorch();
                TorchSharpSupport.EnsureLoadable();
                using var py = TorchTensor.Evaluate("torch.ones(3)");
                using var t = torch.ones(3);
                Console.WriteLine($"both loaded: {py} {t.sum().item<float>()}");
            }
            else if (args[1] == "torchsharp-first")
            {
                TorchSharpSupport.EnsureLoadable();
                using var t = torch.ones(3);
                Console.WriteLine($"TorchSharp loaded: {t.sum().item<float>()}");
                using var py = TorchTensor.Evaluate("torch.ones(3)");
                Console.WriteLine($"Python torch loaded too: {py}");
            }
            else
            {
                using var py = TorchTensor.Evaluate("torch.ones(3)");
                Console.WriteLine($"Python torch loaded: {py}");
                using var array = Interop.NumPy.NDArray.Evaluate("np.ones(3, dtype=np.float32)");
                using var t = array.CopyToTorchSharp();
                Console.WriteLine($"TorchSharp loaded too: {t.sum().item<float>()}");
            }
            return 0;
        }
        catch (LibTorchConflictException e)
        {
            Console.Error.WriteLine($"{e.GetType().Name}: {e.Message}");
            return 3;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"unexpected: {e}");
            return 4;
        }
    }
}
