using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using TorchSharp;

namespace Interop.TorchSharp;

/// <summary>NumPy → TorchSharp: <c>As…</c> shares memory, <c>Copy…</c> copies (see <see cref="TorchSharpTensors.FromBuffer"/>).</summary>
public static class NDArrayTorchSharpExtensions
{
    /// <summary>
    /// A TorchSharp tensor over the array's memory: <b>no copy</b>, writes are seen both ways, strides kept (as_strided).
    /// The tensor holds the array's buffer until libtorch frees its storage. Refuses read-only arrays, negative strides and
    /// big-endian data with typed errors (use <see cref="CopyToTorchSharp(NDArray)"/> for those).
    /// </summary>
    public static torch.Tensor AsTorchSharp(this NDArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        return TorchSharpTensors.FromBuffer(array.PyObject, TorchSharpMemory.Share);
    }

    /// <summary>Copies the array into a new C-contiguous TorchSharp tensor of the same shape and dtype, independent of Python afterwards.</summary>
    public static torch.Tensor CopyToTorchSharp(this NDArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        return TorchSharpTensors.FromBuffer(array.PyObject, TorchSharpMemory.Copy);
    }

    /// <summary>As <see cref="CopyToTorchSharp(NDArray)"/>, checking that the array's dtype is that of <typeparamref name="T"/>.</summary>
    /// <exception cref="ElementTypeMismatchException">The array's dtype is not <typeparamref name="T"/>'s.</exception>
    public static torch.Tensor CopyToTorchSharp<T>(this NDArray array) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(array);
        var dtype = array.DType;
        if (dtype != DType.Of<T>())
            throw new ElementTypeMismatchException(typeof(T), dtype.Name, dtype.ClrType);
        return array.CopyToTorchSharp();
    }

    /// <summary>Shares or copies, as <paramref name="memory"/> says.</summary>
    public static torch.Tensor ToTorchSharp(this NDArray array, TorchSharpMemory memory)
    {
        ArgumentNullException.ThrowIfNull(array);
        return TorchSharpTensors.FromBuffer(array.PyObject, memory);
    }
}

/// <summary>TorchSharp → NumPy: <c>As…</c> shares memory, <c>To…</c> copies (see <see cref="TorchSharpTensors.AsNumPy"/>).</summary>
public static class TorchSharpTensorExtensions
{
    /// <summary>An ndarray over the tensor's memory (CPU tensors: no copy); see <see cref="TorchSharpTensors.AsNumPy"/>.</summary>
    public static NDArray AsNumPy(this torch.Tensor tensor, TorchSharpExportOptions? options = null) => TorchSharpTensors.AsNumPy(tensor, options);

    /// <summary>A C-contiguous ndarray copy of the tensor; see <see cref="TorchSharpTensors.ToNumPy"/>.</summary>
    public static NDArray ToNumPy(this torch.Tensor tensor, TorchSharpExportOptions? options = null) => TorchSharpTensors.ToNumPy(tensor, options);
}
