// Design notes: the failure messages are PyTorch's, character for character, so numbers are printed as Python prints
// them: float repr (shortest round-trip digits; scientific below 1e-4 and from 1e16; 'inf', 'nan'), complex repr,
// tuples with the one-element comma, torch.Size and the '{:.1%}' percentage.
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Interop.Testing;

/// <summary>Python's text forms of numbers, for messages that must equal PyTorch's.</summary>
internal static class PythonFormat
{
    /// <summary><c>repr(float)</c>: <c>0.1</c>, <c>1.0</c>, <c>1e-05</c>, <c>1.5e+16</c>, <c>inf</c>, <c>nan</c>, <c>-0.0</c>.</summary>
    public static string Float(double value) => Repr(value, addDotZero: true);

    /// <summary>A component of <c>repr(complex)</c>: like <see cref="Float"/> but without the forced <c>.0</c>.</summary>
    private static string Repr(double value, bool addDotZero)
    {
        if (double.IsNaN(value))
            return "nan";
        if (double.IsInfinity(value))
            return value > 0 ? "inf" : "-inf";
        var negative = value < 0 || (value == 0 && double.IsNegative(value));
        if (value == 0)
            return (negative ? "-" : "") + (addDotZero ? "0.0" : "0");
        var r = Shortest(Math.Abs(value));
        var (digits, exponent) = Decompose(r); // value = 0.d1d2... * 10^exponent
        var sb = new StringBuilder();
        if (negative)
            sb.Append('-');
        if (exponent <= -4 || exponent > 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1)
                sb.Append('.').Append(digits, 1, digits.Length - 1);
            var exp = exponent - 1;
            sb.Append('e').Append(exp < 0 ? '-' : '+').Append(Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (exponent <= 0)
        {
            sb.Append("0.").Append('0', -exponent).Append(digits);
        }
        else if (exponent >= digits.Length)
        {
            sb.Append(digits).Append('0', exponent - digits.Length);
            if (addDotZero)
                sb.Append(".0");
        }
        else
        {
            sb.Append(digits, 0, exponent).Append('.').Append(digits, exponent, digits.Length - exponent);
        }
        return sb.ToString();
    }

    /// <summary>
    /// The fewest significant digits that read back as <paramref name="value"/>, correctly rounded (Python's repr).
    /// .NET's "R" is not always that: for 2^-25 it gives 16 digits that read back as a different double.
    /// </summary>
    private static string Shortest(double value)
    {
        for (var digits = 1; digits < 17; digits++)
        {
            var text = value.ToString("E" + (digits - 1).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            if (double.Parse(text, CultureInfo.InvariantCulture) == value)
                return text;
            // Next to a power of two the interval that reads back is lopsided: the correctly rounded string may miss
            // it while its neighbour in the last digit hits it (2^-24 is 5.960464477539063e-08 in Python).
            var e = text.IndexOf('E', StringComparison.Ordinal);
            var mantissa = long.Parse(text[..e].Replace(".", "", StringComparison.Ordinal), CultureInfo.InvariantCulture);
            var exponent = int.Parse(text.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) - (digits - 1);
            foreach (var neighbour in new[] { mantissa + 1, mantissa - 1 })
            {
                var candidate = neighbour.ToString(CultureInfo.InvariantCulture) + "E" + exponent.ToString(CultureInfo.InvariantCulture);
                if (neighbour > 0 && double.Parse(candidate, CultureInfo.InvariantCulture) == value)
                    return candidate;
            }
        }
        return value.ToString("E16", CultureInfo.InvariantCulture);
    }

    /// <summary>Splits .NET's round-trip text of a positive finite number into significant digits and a decimal point position.</summary>
    private static (string Digits, int Exponent) Decompose(string text)
    {
        var exponent = 0;
        var ePos = text.IndexOfAny(['E', 'e']);
        if (ePos >= 0)
        {
            exponent = int.Parse(text.AsSpan(ePos + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..ePos];
        }
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var intPart = dot < 0 ? text : text[..dot];
        var fracPart = dot < 0 ? "" : text[(dot + 1)..];
        var all = intPart + fracPart;
        var pointPos = intPart.Length + exponent;
        var lead = 0;
        while (lead < all.Length - 1 && all[lead] == '0')
            lead++;
        all = all[lead..];
        pointPos -= lead;
        all = all.TrimEnd('0');
        if (all.Length == 0)
            all = "0";
        return (all, pointPos);
    }

    /// <summary><c>repr(complex)</c>: <c>(1+2j)</c>, <c>2j</c>, <c>(nan+infj)</c>.</summary>
    public static string Complex(Complex value)
    {
        var imag = Repr(value.Imaginary, addDotZero: false);
        if (value.Real == 0 && !double.IsNegative(value.Real))
            return imag + "j";
        var real = Repr(value.Real, addDotZero: false);
        var sign = imag.StartsWith('-') ? "" : "+";
        return $"({real}{sign}{imag}j)";
    }

    /// <summary>A Python integer.</summary>
    public static string Int(Int128 value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A Python tuple of integers: <c>()</c>, <c>(3,)</c>, <c>(1, 2)</c>.</summary>
    public static string Tuple(IReadOnlyList<long> items) => items.Count switch
    {
        0 => "()",
        1 => $"({items[0].ToString(CultureInfo.InvariantCulture)},)",
        _ => "(" + string.Join(", ", items.Select(i => i.ToString(CultureInfo.InvariantCulture))) + ")",
    };

    /// <summary><c>torch.Size([2, 3])</c>.</summary>
    public static string Size(IReadOnlyList<long> shape) =>
        "torch.Size([" + string.Join(", ", shape.Select(i => i.ToString(CultureInfo.InvariantCulture))) + "])";

    /// <summary><c>f"{x:.1%}"</c>: the fraction times 100 (a double product, as CPython does it), one decimal, round-half-even on the exact value.</summary>
    public static string Percent(double fraction) => (fraction * 100).ToString("F1", CultureInfo.InvariantCulture) + "%";
}
