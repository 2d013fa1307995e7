namespace Interop.Errors;

/// <summary>A call argument has a .NET type that a <see cref="Sessions.PythonSession"/> cannot pass to Python.</summary>
public sealed class UnsupportedArgumentException : InteropException
{
    /// <summary>Creates the exception for an argument of <paramref name="type"/>; <paramref name="where"/> names its position.</summary>
    public UnsupportedArgumentException(Type type, string where, string? detail = null)
        : base($"{where}: a {type} cannot be passed to Python{(detail is null ? "" : " (" + detail + ")")}. Supported: null, bool, " +
               "integers, float/double, string, .NET arrays (any rank) and System.Numerics.Tensors.Tensor<T> of the dtype table's " +
               "element types, TensorArgument (Memory<T> + shape), NDArray, lists/arrays/enumerables, tuples (ITuple) and string-keyed dictionaries of those " +
               $"(nested at most {Sessions.ConversionLimits.MaxDepth} deep, no cycles), ReadOnlyMemory<byte> (bytes), PythonValue results and PythonRef of the same session " +
               "(in-process also TorchTensor). Fix: convert the value to one of these.")
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentType = type;
    }

    /// <summary>The argument's .NET type.</summary>
    public Type ArgumentType { get; }
}

/// <summary>A <see cref="Sessions.PythonValue"/> accessor was used on a value of another kind (e.g. <c>AsDouble</c> on a tensor).</summary>
public sealed class PythonValueKindException : InteropException
{
    /// <summary>Creates the exception: <paramref name="accessor"/> needs <paramref name="expected"/>, the value is <paramref name="actual"/>.</summary>
    public PythonValueKindException(string accessor, string expected, Sessions.PythonValueKind actual, string? pythonType)
        : base($"{accessor} needs a {expected} value, but the result is {actual}" + (pythonType is null ? "" : $" (Python type {pythonType})") +
               ". Fix: check PythonValue.Kind first, or use the accessor for that kind.")
    {
        Actual = actual;
    }

    /// <summary>The kind the value has.</summary>
    public Sessions.PythonValueKind Actual { get; }
}
