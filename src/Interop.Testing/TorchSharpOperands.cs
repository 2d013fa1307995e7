// Design notes: the only class of the comparison that names TorchSharp types. TensorOperand recognises a TorchSharp
// tensor by its type name and calls in here, so comparing arrays, NumPy or PyTorch values never JIT-compiles a method
// that references TorchSharp, and TorchSharp.dll (with libtorch) is loaded only by a caller that already uses it.
using Interop.TorchSharp;
using TorchSharp;

namespace Interop.Testing;

/// <summary>Reads TorchSharp tensors into <see cref="TensorOperand"/>s.</summary>
public static class TorchSharpOperands
{
    /// <summary>A TorchSharp tensor's dtype, shape, strides and values (CPU tensors are read in place; others are copied to the CPU first).</summary>
    /// <exception cref="NotSupportedException">The tensor's dtype is not in the dtype table.</exception>
    public static TensorOperand FromTensor(torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using var scope = torch.NewDisposeScope();
        var cpu = tensor.device_type == DeviceType.CPU ? tensor : tensor.cpu();
        var dtype = TorchSharpTensors.DTypeOf(cpu.dtype);
        var shape = cpu.shape;
        var strides = cpu.stride().Select(s => s * dtype.ItemSize).ToArray();
        var address = cpu.numel() == 0 ? 0 : cpu.DataAddress();
        return TensorOperand.FromMemory(address, dtype, shape, strides);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    internal static TensorOperand Read(object value) => FromTensor((torch.Tensor)value);
}
