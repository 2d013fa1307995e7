using Interop.Isolated;
using Interop.Sessions;
using TorchSharp;

namespace Interop.TorchSharp;

/// <summary>Tensor results of a <see cref="PythonSession"/> as TorchSharp tensors.</summary>
public static class PythonValueTorchSharpExtensions
{
    /// <summary>
    /// The tensor result as a TorchSharp tensor. <see cref="TorchSharpMemory.Share"/>: <b>no copy</b>, the TorchSharp
    /// tensor lies over the result's memory and keeps it valid until libtorch frees the tensor's storage, independently
    /// of the value (which may be disposed first). Isolated sessions support it: the memory is the worker's shared
    /// result region, mapped in this process. <see cref="TorchSharpMemory.Copy"/>: a TorchSharp-owned C-contiguous copy.
    /// </summary>
    /// <exception cref="NotSupportedException">Share of a result whose memory cannot be held apart from the value (in-process results): copy instead.</exception>
    /// <exception cref="Errors.PythonValueKindException">The value is not a tensor.</exception>
    /// <exception cref="TorchSharpDTypeException">TorchSharp has no such dtype (uint16/32/64).</exception>
    public static torch.Tensor ToTorchSharp(this PythonValue value, TorchSharpMemory memory = TorchSharpMemory.Share)
    {
        ArgumentNullException.ThrowIfNull(value);
        var data = value.AsTensorData();
        var shape = data.Shape.ToArray();
        if (memory == TorchSharpMemory.Share)
        {
            if (data is not SharedTensorData shared)
                throw new NotSupportedException("Only results of an isolated session can be shared with TorchSharp (their memory is a shared region " +
                                                "that stays mapped while the tensor lives). Fix: pass TorchSharpMemory.Copy.");
            var strides = data.Strides.Select(s => s / data.DType.ItemSize).ToArray(); // C order: whole elements
            return TorchSharpTensors.WrapMemory(shared.Address, data.DType, shape, strides, shared.AcquireHold());
        }
        return TorchSharpTensors.CopyStrided(data.Address, data.DType, shape, [.. data.Strides]);
    }

    /// <summary>The address of a CPU tensor's first element (libtorch's <c>data_ptr()</c>), to check what shares memory.</summary>
    public static nint DataAddress(this torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return Native.LibTorchSharpNative.THSTensor_data(tensor.Handle);
    }
}
