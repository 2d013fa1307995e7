using Interop.DTypes;
using Interop.Errors;

namespace Interop.TorchSharp;

/// <summary>TorchSharp cannot run in this process (its native library does not load here); the message says why and what to do.</summary>
public sealed class TorchSharpUnavailableException : InteropException
{
    /// <summary>Creates the exception with the reason (<see cref="TorchSharpSupport.Problem"/>).</summary>
    public TorchSharpUnavailableException(string reason) : base(reason) { }

    /// <summary>Creates the exception with the reason and its cause.</summary>
    public TorchSharpUnavailableException(string reason, Exception? innerException) : base(reason, innerException) { }
}

/// <summary>A dtype has no counterpart on the other side: TorchSharp 0.107 has no uint16/32/64 tensors; NumPy has no bfloat16 or quantized types.</summary>
public sealed class TorchSharpDTypeException : InteropException
{
    /// <summary>Creates the exception with the message (problem and fix).</summary>
    public TorchSharpDTypeException(string message, string dtype) : base(message)
    {
        DType = dtype;
    }

    /// <summary>The dtype that has no counterpart.</summary>
    public string DType { get; }

    internal static TorchSharpDTypeException NoScalarType(DType dtype)
    {
        // The wider signed type that holds every value, from the same table.
        var wider = Interop.DTypes.DType.From(DTypeKind.SignedInteger, dtype.ItemSize * 2);
        var fix = wider is not null
            ? $"convert in NumPy first: arr.astype(np.{wider.Name}) (holds every {dtype.Name} value)"
            : $"convert in NumPy first: arr.view(np.int{dtype.ItemSize * 8}) (same bits, read as signed) or arr.astype(np.float64)";
        return new TorchSharpDTypeException($"TorchSharp 0.107 has no {dtype.Name} tensors (its ScalarType has no unsigned type wider than 8 bits). Fix: {fix}.", dtype.Name);
    }
}

/// <summary>The TorchSharp tensor requires grad and the caller turned detaching off (<see cref="TorchSharpExportOptions.Detach"/> = false).</summary>
public sealed class TorchSharpRequiresGradException : InteropException
{
    /// <summary>Creates the exception.</summary>
    public TorchSharpRequiresGradException()
        : base("The TorchSharp tensor requires grad, and TorchSharpExportOptions.Detach is false, so it is not exported to NumPy " +
               "(NumPy would not carry the autograd graph). Fix: export tensor.detach(), or leave Detach at its default (true).")
    {
    }
}
