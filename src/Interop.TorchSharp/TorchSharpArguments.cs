// Design notes: TorchSharp tensors as call arguments of any session. The core library never references TorchSharp;
// it asks registered converters about tensor types it does not know, and loads this assembly when it meets a
// TorchSharp tensor (the module initializer below registers the converter). The argument lies over the tensor's own
// memory (CPU tensors; strides kept), so the session's copy is the only one: into the worker's shared region
// (isolated) or into a new NumPy array (in-process). The tensor is referenced by the argument for the call.
using System.Runtime.CompilerServices;
using Interop.Sessions;
using TorchSharp;

namespace Interop.TorchSharp;

/// <summary>TorchSharp tensors as <see cref="PythonSession"/> call arguments.</summary>
public static class TorchSharpArguments
{
    /// <summary>Registers the converter with the core library (runs when this assembly loads).</summary>
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Registers the TorchSharp converter so tensors can be passed without set-up.")]
    internal static void Register() => TensorArgument.RegisterConverter(value => value is torch.Tensor t ? AsArgument(t) : null);

    /// <summary>
    /// An argument over <paramref name="tensor"/>'s memory, <b>no copy</b> (the session copies it once during the call).
    /// Passing the tensor itself to a call does the same. Keep the tensor alive and unchanged until the call returns.
    /// </summary>
    /// <exception cref="NotSupportedException">The tensor is not on the CPU (call <c>.cpu()</c>), or its dtype has no entry in the dtype table.</exception>
    /// <exception cref="ObjectDisposedException">The tensor was disposed.</exception>
    public static TensorArgument AsArgument(this torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.IsInvalid)
            throw new ObjectDisposedException(nameof(torch.Tensor), "The TorchSharp tensor was disposed.");
        if (tensor.device_type != DeviceType.CPU)
            throw new NotSupportedException($"The TorchSharp tensor is on {tensor.device}; call arguments are read from CPU memory. Fix: pass tensor.cpu().");
        var dtype = TorchSharpTensors.DTypeOf(tensor.dtype);
        var shape = tensor.shape;
        var strides = tensor.stride().Select(s => s * dtype.ItemSize).ToArray();
        var address = tensor.numel() == 0 ? 0 : tensor.DataAddress();
        return TensorArgument.FromMemory(address, dtype, shape, strides, tensor);
    }
}
