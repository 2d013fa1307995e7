// Design notes: a parser for the PEP 3118 / struct-module format strings that NumPy emits for single
// elements: an optional byte-order/size prefix (@ = < > !), then one code (? b B h H i I l L q Q n N e f d,
// or Zf Zd for complex). '@' (or no prefix) means native sizes, where C long is sizeof(CLong): 8 bytes on
// 64-bit Linux and macOS, 4 on Windows; '= < > !' mean the struct module's standard sizes (long = 4).
// References: https://docs.python.org/3/library/struct.html, https://peps.python.org/pep-3118/
using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Buffers;

/// <summary>The result of parsing a buffer format string.</summary>
/// <param name="DType">The element dtype.</param>
/// <param name="BigEndian">True when the bytes are big-endian.</param>
public readonly record struct ParsedFormat(DType DType, bool BigEndian)
{
    /// <summary>True when the bytes are in this machine's byte order.</summary>
    public bool IsNativeOrder => BigEndian != BitConverter.IsLittleEndian;

    /// <summary>How many bytes a copy reverses at a time: 1 in native order, else one component (a complex number swaps each half).</summary>
    public int SwapUnit => IsNativeOrder ? 1 : DType.Kind == DTypeKind.Complex ? DType.ItemSize / 2 : DType.ItemSize;
}

/// <summary>Parses PEP 3118 format strings into entries of the dtype table.</summary>
public static class BufferFormat
{
    /// <summary>Parses <paramref name="format"/> (null means <c>"B"</c>, as in the buffer protocol).</summary>
    /// <exception cref="UnsupportedDTypeException">The format is not a single supported element.</exception>
    public static ParsedFormat Parse(string? format)
    {
        format ??= "B";
        var s = format.AsSpan();
        var native = true;
        var bigEndian = !BitConverter.IsLittleEndian;
        if (s.Length > 0 && s[0] is '@' or '=' or '<' or '>' or '!')
        {
            native = s[0] == '@';
            bigEndian = s[0] switch { '<' => false, '>' or '!' => true, _ => !BitConverter.IsLittleEndian };
            s = s[1..];
        }
        if (s.Length > 0 && char.IsAsciiDigit(s[0]))
        {
            var digits = 0;
            while (digits < s.Length && char.IsAsciiDigit(s[digits]))
                digits++;
            if (s[..digits] is not "1")
                throw new UnsupportedDTypeException(Describe(format), format);
            s = s[digits..];
        }
        DType? dtype = s switch
        {
            "?" => DType.Bool,
            "b" => DType.Int8,
            "B" => DType.UInt8,
            "h" => DType.Int16,
            "H" => DType.UInt16,
            "i" => DType.Int32,
            "I" => DType.UInt32,
            "l" => native && Marshal.SizeOf<CLong>() == 8 ? DType.Int64 : DType.Int32,
            "L" => native && Marshal.SizeOf<CLong>() == 8 ? DType.UInt64 : DType.UInt32,
            "q" => DType.Int64,
            "Q" => DType.UInt64,
            "n" when native => nint.Size == 8 ? DType.Int64 : DType.Int32,
            "N" when native => nint.Size == 8 ? DType.UInt64 : DType.UInt32,
            "e" => DType.Float16,
            "f" => DType.Float32,
            "d" => DType.Float64,
            "Zf" => DType.Complex64,
            "Zd" => DType.Complex128,
            _ => null,
        };
        return dtype is null ? throw new UnsupportedDTypeException(Describe(format), format) : new ParsedFormat(dtype, bigEndian);
    }

    /// <summary>A readable name for a format the table does not cover.</summary>
    internal static string Describe(string format)
    {
        var body = format.TrimStart('@', '=', '<', '>', '!');
        return body switch
        {
            "O" => "object (dtype=object)",
            "g" => "long double (np.longdouble / float128)",
            "Zg" => "complex long double (np.clongdouble / complex256)",
            "?" or "b" or "B" or "h" or "H" or "i" or "I" or "l" or "L" or "q" or "Q" or "e" or "f" or "d" or "Zf" or "Zd" => $"'{format}'",
            _ when body.StartsWith("T{", StringComparison.Ordinal) => "a structured (record) dtype",
            _ when body.EndsWith('s') => "bytes (dtype 'S')",
            _ when body.EndsWith('w') => "unicode strings (dtype 'U')",
            _ when body.Length > 0 && char.IsAsciiDigit(body[0]) => "a sub-array dtype",
            _ => $"'{format}'",
        };
    }
}
