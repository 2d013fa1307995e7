namespace Interop.Errors;

/// <summary>
/// PyTorch refused a conversion (for example <c>torch.from_numpy</c> of an array with negative strides). The message
/// is PyTorch's own; <see cref="Exception.InnerException"/> is the <see cref="PythonErrorException"/> with the traceback.
/// </summary>
public sealed class TorchConversionException : InteropException
{
    /// <summary>Creates the exception for <paramref name="operation"/> from PyTorch's error.</summary>
    public TorchConversionException(string operation, PythonErrorException pythonError, string? fix = null)
        : base($"{operation} failed: PyTorch says \"{pythonError?.PythonMessage}\"" + (fix is null ? "." : ". Fix: " + fix), pythonError)
    {
        ArgumentNullException.ThrowIfNull(pythonError);
        Operation = operation;
        PyTorchMessage = pythonError.PythonMessage;
    }

    /// <summary>The PyTorch call that failed, e.g. <c>torch.from_numpy</c>.</summary>
    public string Operation { get; }

    /// <summary>PyTorch's message, verbatim.</summary>
    public string PyTorchMessage { get; }
}

/// <summary>
/// The export policy (<c>interop_helpers.torch_export.prepare</c>) refused a tensor. Each subclass corresponds to one
/// Python exception class of that module (see <see cref="Torch.TorchExport.Translate"/>); the message names the fix.
/// <see cref="Exception.InnerException"/> is the <see cref="PythonErrorException"/> with the Python traceback.
/// </summary>
public class TensorExportException : InteropException
{
    /// <summary>Creates the exception with the policy's message.</summary>
    public TensorExportException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The tensor's dtype has no NumPy equivalent (bfloat16, float8 variants, complex32, ...). Fix: opt in to <see cref="Torch.ExportOptions.Upcast"/>.</summary>
public sealed class TensorDTypeNotSupportedByNumPyException : TensorExportException
{
    /// <summary>Creates the exception with the policy's message.</summary>
    public TensorDTypeNotSupportedByNumPyException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The tensor's layout has no dense memory to share (sparse, quantized). Fix: <c>to_dense()</c> / <c>dequantize()</c> in Python.</summary>
public sealed class TensorLayoutNotSupportedException : TensorExportException
{
    /// <summary>Creates the exception with the policy's message.</summary>
    public TensorLayoutNotSupportedException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The tensor lives on a device it cannot be exported from (the <c>meta</c> device has no data at all).</summary>
public sealed class TensorDeviceNotSupportedException : TensorExportException
{
    /// <summary>Creates the exception with the policy's message.</summary>
    public TensorDeviceNotSupportedException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The tensor requires grad and the caller turned detaching off (<see cref="Torch.ExportOptions.Detach"/> = false).</summary>
public sealed class TensorRequiresGradException : TensorExportException
{
    /// <summary>Creates the exception with the policy's message.</summary>
    public TensorRequiresGradException(string message, Exception? innerException) : base(message, innerException) { }
}
