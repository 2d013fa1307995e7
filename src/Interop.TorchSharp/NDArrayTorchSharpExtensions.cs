using Interop.NumPy;
using TorchSharp;

namespace Interop.TorchSharp;

/// <summary>NumPy → TorchSharp conversions. (Zero-copy mapping is the subject of the TorchSharp issue; this is the copy path.)</summary>
public static class NDArrayTorchSharpExtensions
{
    /// <summary>
    /// Copies the array into a new TorchSharp tensor of the same shape and dtype. The tensor owns its memory
    /// (a pinned .NET array) and is independent of Python afterwards.
    /// </summary>
    public static torch.Tensor CopyToTorchSharp<T>(this NDArray array) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(array);
        var data = array.ToMultidimensionalArray<T>();
        var tensor = torch.from_array(data);
        return array.Shape.Length == 0 ? tensor.reshape([]) : tensor;
    }
}
