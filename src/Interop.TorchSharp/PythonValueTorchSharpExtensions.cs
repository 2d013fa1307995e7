using Interop.DTypes;
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
        return CopyAnyLayout(data, shape);
    }

    /// <summary>
    /// A C-contiguous TorchSharp copy of any strided layout a result can have (an in-process result is whatever ndarray
    /// Python returned): negative strides (<c>a[::-1]</c>) and byte strides that are not whole elements (a field of a
    /// record array). libtorch strides count elements and cannot be negative, so the source is viewed as bytes (one more
    /// dimension for the bytes of an element) from its lowest address, reversed dimensions are flipped back, and the
    /// bytes are copied into a new tensor of the dtype.
    /// </summary>
    private static torch.Tensor CopyAnyLayout(TensorData data, long[] shape)
    {
        var result = torch.empty(shape, TorchSharpTensors.ScalarTypeOf(data.DType)); // refuses dtypes TorchSharp lacks
        try
        {
            if (data.ElementCount == 0)
                return result;
            var itemSize = data.DType.ItemSize;
            long[] byteShape = [.. shape, itemSize];
            var byteStrides = new long[shape.Length + 1];
            byteStrides[shape.Length] = 1;
            var start = data.Address;
            var flipped = new List<long>();
            for (var i = 0; i < shape.Length; i++)
            {
                var stride = data.Strides[i];
                if (shape[i] > 1 && stride < 0)
                {
                    start += (nint)((shape[i] - 1) * stride);
                    stride = -stride;
                    flipped.Add(i);
                }
                byteStrides[i] = shape[i] > 1 ? stride : 0;
            }
            using var source = TorchSharpTensors.WrapMemory(start, DType.UInt8, byteShape, byteStrides, owner: null);
            using var ordered = flipped.Count > 0 ? source.flip([.. flipped]) : null;
            using var destination = TorchSharpTensors.WrapMemory(result.DataAddress(), DType.UInt8, byteShape, [], owner: null);
            destination.copy_(ordered ?? source);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>The address of a CPU tensor's first element (libtorch's <c>data_ptr()</c>), to check what shares memory.</summary>
    public static nint DataAddress(this torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return Native.LibTorchSharpNative.THSTensor_data(tensor.Handle);
    }
}
