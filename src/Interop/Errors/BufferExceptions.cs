namespace Interop.Errors;

/// <summary>The buffer's element type has no place in the dtype table (object, strings, records, datetime, long double).</summary>
public sealed class UnsupportedDTypeException : InteropException
{
    /// <summary>Creates the exception for <paramref name="dtype"/> (a description) with buffer format <paramref name="format"/>.</summary>
    public UnsupportedDTypeException(string dtype, string? format)
        : base($"Unsupported dtype {dtype}" + (format is null ? "" : $" (buffer format '{format}')") +
               ": Interop maps bool, int8-64, uint8-64, float16/32/64 and complex64/128. " +
               "Fix: convert in NumPy first, e.g. arr.astype(np.float64), or pass plain numbers.")
    {
        DType = dtype;
        Format = format;
    }

    /// <summary>The dtype as NumPy or the format describes it.</summary>
    public string DType { get; }

    /// <summary>The PEP 3118 format string, when there was one.</summary>
    public string? Format { get; }
}

/// <summary>A zero-copy view was asked of big-endian (non-native byte order) data.</summary>
public sealed class ByteOrderException : InteropException
{
    /// <summary>Creates the exception for dtype <paramref name="dtype"/>.</summary>
    public ByteOrderException(string dtype)
        : base($"The array holds big-endian {dtype} data, which a zero-copy view would misread on this little-endian machine. " +
               $"Fix: copy instead (the copying conversions swap bytes), or convert in NumPy: arr.astype(arr.dtype.newbyteorder('<')).")
    {
        DType = dtype;
    }

    /// <summary>The element dtype.</summary>
    public string DType { get; }
}

/// <summary>Write access was asked of a read-only buffer.</summary>
public sealed class ReadOnlyBufferException : InteropException
{
    /// <summary>Creates the exception; <paramref name="what"/> names the operation.</summary>
    public ReadOnlyBufferException(string what)
        : base($"{what} needs a writable buffer, but the array is read-only (arr.flags.writeable is False, e.g. np.frombuffer(bytes) or a broadcast view). " +
               "Fix: ask for a read-only view, or make a writable copy in NumPy first: arr.copy().")
    {
    }

    /// <summary>Creates the exception; <paramref name="what"/> names the operation, <paramref name="fix"/> the way out.</summary>
    public ReadOnlyBufferException(string what, string fix)
        : base($"{what} needs a writable buffer, but the buffer is read-only (e.g. np.frombuffer(bytes), a broadcast view, or arr.flags.writeable = False). Fix: {fix}")
    {
    }
}

/// <summary>The exporter returned an indirect (PIL-style, suboffsets) buffer, which has no flat address space.</summary>
public sealed class IndirectBufferException : InteropException
{
    /// <summary>Creates the exception.</summary>
    public IndirectBufferException()
        : base("The object exports an indirect buffer (suboffsets), which cannot be addressed as flat memory. Fix: convert it with np.array(obj) first.")
    {
    }
}

/// <summary>The memory layout cannot be expressed by the requested .NET view.</summary>
public sealed class LayoutException : InteropException
{
    /// <summary>Creates the exception with the reason and the fix.</summary>
    public LayoutException(string message) : base(message) { }

    /// <summary>Creates the exception with the reason, the fix and the exception that caused it.</summary>
    public LayoutException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The .NET element type does not match the buffer's dtype.</summary>
public sealed class ElementTypeMismatchException : InteropException
{
    /// <summary>Creates the exception.</summary>
    public ElementTypeMismatchException(Type requested, string dtype, Type? expected)
        : base($"Cannot view {dtype} data as {requested.Name}: the element type for {dtype} is " +
               (expected?.Name ?? "(none)") + $". Fix: use {expected?.Name ?? "a supported dtype"}, or convert in NumPy: arr.astype(...).")
    {
        Requested = requested;
        Expected = expected;
    }

    /// <summary>The type that was asked for.</summary>
    public Type Requested { get; }

    /// <summary>The type the dtype table gives for the buffer's dtype.</summary>
    public Type? Expected { get; }
}

/// <summary>
/// An array has more elements than the requested .NET container can hold (a span or <see cref="Memory{T}"/>: 2^31 - 1;
/// a .NET array: <see cref="Array.MaxLength"/>). The message states the count, the limit and the ways out: a tensor span
/// (native-int lengths), a chunked copy (<c>CopyTo(start, destination)</c>), or slicing the array in Python.
/// </summary>
public sealed class TooManyElementsException : InteropException
{
    /// <summary>Creates the exception: <paramref name="operation"/> cannot hold <paramref name="elementCount"/> elements in <paramref name="container"/>, which holds at most <paramref name="limit"/>.</summary>
    public TooManyElementsException(string operation, long elementCount, long limit, string container)
        : base(FormattableString.Invariant(
               $"{operation} cannot hold the array's {elementCount} elements: {container} holds at most {limit}. ") +
               "Fix: read it in place through a tensor span (AsReadOnlyTensorSpan: native-int lengths), copy it in chunks with " +
               "CopyTo(start, destination), or slice the array in Python (e.g. arr[i:j]) and convert the pieces.")
    {
        Operation = operation;
        ElementCount = elementCount;
        Limit = limit;
    }

    /// <summary>The conversion that was asked for, e.g. <c>AsReadOnlySpan</c>.</summary>
    public string Operation { get; }

    /// <summary>The array's number of elements.</summary>
    public long ElementCount { get; }

    /// <summary>The most elements the requested container holds.</summary>
    public long Limit { get; }
}
