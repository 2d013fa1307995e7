// Design notes: the C# side of the export policy in python/interop_helpers/torch_export.py. The Python module
// decides (device, grad, conj/neg views, dtypes NumPy lacks, sparse/quantized/meta); this class names its
// exception classes and maps them to typed .NET exceptions, for every kind of session.
using Interop.Errors;

namespace Interop.Torch;

/// <summary>The export policy's module and the mapping of its Python exceptions to .NET exceptions.</summary>
public static class TorchExport
{
    /// <summary>The Python module that holds <c>prepare(tensor, *, detach=True, upcast=False)</c>.</summary>
    public const string ModuleName = "interop_helpers.torch_export";

    /// <summary>
    /// Maps a Python exception raised by the policy (<c>interop_helpers.torch_export.*Error</c>) to its typed .NET
    /// exception (the Python error becomes the inner exception); any other error is returned unchanged.
    /// </summary>
    public static InteropException Translate(PythonErrorException error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var prefix = ModuleName + ".";
        if (!error.PythonType.StartsWith(prefix, StringComparison.Ordinal))
            return error;
        return error.PythonType[prefix.Length..] switch
        {
            "UnsupportedDTypeError" => new TensorDTypeNotSupportedByNumPyException(error.PythonMessage, error),
            "UnsupportedLayoutError" => new TensorLayoutNotSupportedException(error.PythonMessage, error),
            "UnsupportedDeviceError" => new TensorDeviceNotSupportedException(error.PythonMessage, error),
            "RequiresGradError" => new TensorRequiresGradException(error.PythonMessage, error),
            _ => new TensorExportException(error.PythonMessage, error),
        };
    }
}
