// Design notes: the one dtype table. Every conversion in the library asks this table; nothing else maps
// NumPy names, buffer format characters, .NET element types, PyTorch dtypes or TorchSharp ScalarType codes.
// The Python helper package checks its own copy against this table in the test suite.
using System.Numerics;
using System.Runtime.InteropServices;

namespace Interop.DTypes;

/// <summary>What kind of number an element is.</summary>
#pragma warning disable CA1720 // Float is the kind's name in NumPy and PyTorch
public enum DTypeKind
{
    /// <summary>NumPy's <c>bool</c>: one byte, 0 or 1.</summary>
    Bool,
    /// <summary>Two's-complement signed integer.</summary>
    SignedInteger,
    /// <summary>Unsigned integer.</summary>
    UnsignedInteger,
    /// <summary>IEEE binary floating point (and bfloat16).</summary>
    Float,
    /// <summary>A pair of floats, real then imaginary.</summary>
    Complex,
}
#pragma warning restore CA1720

/// <summary>One row of the dtype table. Instances are the static members; compare them by reference.</summary>
public sealed class DType
{
    private DType(string name, DTypeKind kind, int itemSize, Type? clrType, string? numPyName, string torchName, int? torchSharpScalarType, char? formatChar)
    {
        Name = name;
        Kind = kind;
        ItemSize = itemSize;
        ClrType = clrType;
        NumPyName = numPyName;
        TorchName = torchName;
        TorchSharpScalarType = torchSharpScalarType;
        FormatChar = formatChar;
    }

    /// <summary>The dtype's name, NumPy's where NumPy has it (<c>float32</c>), else PyTorch's (<c>bfloat16</c>).</summary>
    public string Name { get; }

    /// <summary>The kind of number.</summary>
    public DTypeKind Kind { get; }

    /// <summary>Bytes per element.</summary>
    public int ItemSize { get; }

    /// <summary>The .NET element type; <see langword="null"/> where .NET has none (bfloat16).</summary>
    public Type? ClrType { get; }

    /// <summary>NumPy's dtype name; <see langword="null"/> for bfloat16, which NumPy lacks.</summary>
    public string? NumPyName { get; }

    /// <summary>The PyTorch dtype, e.g. <c>torch.float32</c>.</summary>
    public string TorchName { get; }

    /// <summary>TorchSharp's <c>ScalarType</c> code (libtorch's c10::ScalarType); <see langword="null"/> where TorchSharp has none.</summary>
    public int? TorchSharpScalarType { get; }

    /// <summary>The canonical struct-module format character(s) NumPy uses in native mode; null when NumPy cannot export it.</summary>
    public char? FormatChar { get; }

    /// <summary>The NumPy <c>dtype.str</c> in little-endian form, e.g. <c>&lt;f4</c>.</summary>
    public string? NumPyTypeString => NumPyName is null ? null : Kind switch
    {
        DTypeKind.Bool => "|b1",
        _ when ItemSize == 1 => "|" + KindChar + "1",
        _ => "<" + KindChar + ItemSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private char KindChar => Kind switch
    {
        DTypeKind.Bool => 'b',
        DTypeKind.SignedInteger => 'i',
        DTypeKind.UnsignedInteger => 'u',
        DTypeKind.Float => 'f',
        _ => 'c',
    };

#pragma warning disable CA1720 // the names are the dtypes' own
    /// <summary>bool ↔ <see cref="bool"/> (one byte).</summary>
    public static readonly DType Bool = new("bool", DTypeKind.Bool, 1, typeof(bool), "bool", "torch.bool", 11, '?');
    /// <summary>int8 ↔ <see cref="sbyte"/>.</summary>
    public static readonly DType Int8 = new("int8", DTypeKind.SignedInteger, 1, typeof(sbyte), "int8", "torch.int8", 1, 'b');
    /// <summary>int16 ↔ <see cref="short"/>.</summary>
    public static readonly DType Int16 = new("int16", DTypeKind.SignedInteger, 2, typeof(short), "int16", "torch.int16", 2, 'h');
    /// <summary>int32 ↔ <see cref="int"/>.</summary>
    public static readonly DType Int32 = new("int32", DTypeKind.SignedInteger, 4, typeof(int), "int32", "torch.int32", 3, 'i');
    /// <summary>int64 ↔ <see cref="long"/>.</summary>
    public static readonly DType Int64 = new("int64", DTypeKind.SignedInteger, 8, typeof(long), "int64", "torch.int64", 4, 'q');
    /// <summary>uint8 ↔ <see cref="byte"/>.</summary>
    public static readonly DType UInt8 = new("uint8", DTypeKind.UnsignedInteger, 1, typeof(byte), "uint8", "torch.uint8", 0, 'B');
    /// <summary>uint16 ↔ <see cref="ushort"/>. TorchSharp has no uint16 tensors.</summary>
    public static readonly DType UInt16 = new("uint16", DTypeKind.UnsignedInteger, 2, typeof(ushort), "uint16", "torch.uint16", null, 'H');
    /// <summary>uint32 ↔ <see cref="uint"/>. TorchSharp has no uint32 tensors.</summary>
    public static readonly DType UInt32 = new("uint32", DTypeKind.UnsignedInteger, 4, typeof(uint), "uint32", "torch.uint32", null, 'I');
    /// <summary>uint64 ↔ <see cref="ulong"/>. TorchSharp has no uint64 tensors.</summary>
    public static readonly DType UInt64 = new("uint64", DTypeKind.UnsignedInteger, 8, typeof(ulong), "uint64", "torch.uint64", null, 'Q');
    /// <summary>float16 ↔ <see cref="Half"/>.</summary>
    public static readonly DType Float16 = new("float16", DTypeKind.Float, 2, typeof(Half), "float16", "torch.float16", 5, 'e');
    /// <summary>bfloat16: PyTorch and TorchSharp only. NumPy has no such dtype, so no buffer carries it; export upcasts to float32 on request.</summary>
    public static readonly DType BFloat16 = new("bfloat16", DTypeKind.Float, 2, null, null, "torch.bfloat16", 15, null);
    /// <summary>float32 ↔ <see cref="float"/>.</summary>
    public static readonly DType Float32 = new("float32", DTypeKind.Float, 4, typeof(float), "float32", "torch.float32", 6, 'f');
    /// <summary>float64 ↔ <see cref="double"/>.</summary>
    public static readonly DType Float64 = new("float64", DTypeKind.Float, 8, typeof(double), "float64", "torch.float64", 7, 'd');
    /// <summary>complex64 ↔ <see cref="ComplexFloat"/> (two <see cref="float"/>s; .NET has no single-precision complex).</summary>
    public static readonly DType Complex64 = new("complex64", DTypeKind.Complex, 8, typeof(ComplexFloat), "complex64", "torch.complex64", 9, null);
    /// <summary>complex128 ↔ <see cref="System.Numerics.Complex"/>.</summary>
    public static readonly DType Complex128 = new("complex128", DTypeKind.Complex, 16, typeof(Complex), "complex128", "torch.complex128", 10, null);
#pragma warning restore CA1720

    /// <summary>Every row of the table.</summary>
    public static IReadOnlyList<DType> All { get; } =
        [Bool, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float16, BFloat16, Float32, Float64, Complex64, Complex128];

    private static readonly Dictionary<Type, DType> s_byClrType = All.Where(d => d.ClrType is not null).ToDictionary(d => d.ClrType!);
    private static readonly Dictionary<string, DType> s_byName = All.ToDictionary(d => d.Name, StringComparer.Ordinal);

    /// <summary>The dtype of .NET element type <typeparamref name="T"/>.</summary>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> has no dtype.</exception>
    public static DType Of<T>() => Of(typeof(T));

    /// <summary>The dtype of a .NET element type.</summary>
    /// <exception cref="NotSupportedException">The type has no dtype.</exception>
    public static DType Of(Type clrType) => s_byClrType.TryGetValue(clrType, out var d) ? d
        : throw new NotSupportedException($"{clrType} has no NumPy/PyTorch dtype. Supported element types: {string.Join(", ", s_byClrType.Keys.Select(t => t.Name))}.");

    /// <summary>Finds a dtype by its name (<c>float32</c>, <c>bfloat16</c>, ...) or PyTorch name (<c>torch.float32</c>).</summary>
    public static DType? FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.StartsWith("torch.", StringComparison.Ordinal))
            return All.FirstOrDefault(d => d.TorchName == name);
        return s_byName.GetValueOrDefault(name);
    }

    /// <summary>The dtype for a kind and size, or null when the table has none.</summary>
    public static DType? From(DTypeKind kind, int itemSize) =>
        All.FirstOrDefault(d => d.Kind == kind && d.ItemSize == itemSize && d.NumPyName is not null);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>A single-precision complex number, the element type of NumPy's <c>complex64</c>; layout: real, imaginary.</summary>
/// <param name="Real">The real part.</param>
/// <param name="Imaginary">The imaginary part.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct ComplexFloat(float Real, float Imaginary)
{
    /// <summary>Widens to <see cref="Complex"/>.</summary>
    public static implicit operator Complex(ComplexFloat value) => new(value.Real, value.Imaginary);

    /// <summary>Widens to <see cref="Complex"/>.</summary>
    public Complex ToComplex() => this;
}
