// Generates comparison cases for the agreement test: dtype x shape x layout, with values chosen where verdicts are
// delicate (at the tolerance boundary give or take an ulp of the dtype, NaN, +-inf, -0.0, subnormals, huge values).
using System.Buffers.Binary;
using Interop.DTypes;

namespace Interop.Testing.Tests;

/// <summary>One operand: a storage of bytes and the strided view of it that both sides compare.</summary>
internal sealed record OperandSpec(DType DType, byte[] Storage, long[] Shape, long[] Strides, long Offset)
{
    public TensorOperand ToOperand() => TensorOperand.FromStorage(Storage, DType, Shape, Strides, Offset);
}

/// <summary>A pair and the options of one assert_close call.</summary>
internal sealed record CloseCase(OperandSpec Actual, OperandSpec Expected, CloseOptions Options);

internal sealed class PairGenerator(int seed)
{
    private static readonly DType[] s_dtypes =
    [
        DType.Float16, DType.BFloat16, DType.Float32, DType.Float64, DType.Complex64, DType.Complex128,
        DType.Int8, DType.UInt8, DType.Int16, DType.Int32, DType.Int64, DType.Bool,
        DType.Float32, DType.Float64, DType.Float16, DType.BFloat16, // floats weigh double
    ];

    private readonly Random _random = new(seed);

    public CloseCase Next()
    {
        var dtype = Pick(s_dtypes);
        var otherDtype = dtype;
        var checkDtype = true;
        if (Chance(0.08))
        {
            otherDtype = Pick(s_dtypes);
            checkDtype = Chance(0.3);
        }
        var rank = _random.Next(0, 4);
        var shape = Enumerable.Range(0, rank).Select(_ => (long)(Chance(0.04) ? 0 : _random.Next(1, 5))).ToArray();
        var otherShape = Chance(0.02) && rank > 0 ? shape.Select((d, i) => i == 0 ? d + 1 : d).ToArray() : shape;

        double? rtol = null, atol = null;
        if (Chance(0.4))
        {
            rtol = Chance(0.2) ? 0 : Math.Pow(10, -_random.Next(1, 9)) * (1 + _random.Next(0, 3));
            atol = Chance(0.2) ? 0 : Math.Pow(10, -_random.Next(1, 9)) * (1 + _random.Next(0, 3));
        }
        var (drtol, datol) = TensorComparer.Defaults(otherDtype, dtype);
        var (effRtol, effAtol) = (rtol ?? drtol, atol ?? datol);

        var n = shape.Aggregate(1L, (a, b) => a * b);
        var expected = new Value[n];
        var actual = new Value[n];
        for (var i = 0; i < n; i++)
        {
            expected[i] = NewValue(dtype);
            actual[i] = Derive(expected[i], dtype, effRtol, effAtol);
        }
        if (otherDtype != dtype)
            for (var i = 0; i < n; i++)
                actual[i] = NewValue(otherDtype, actual[i]);
        var options = new CloseOptions
        {
            Rtol = rtol,
            Atol = atol,
            EqualNan = Chance(0.3),
            CheckDtype = checkDtype,
            CheckStride = Chance(0.1),
        };
        var otherCount = otherShape.Aggregate(1L, (a, b) => a * b);
        if (otherCount != n)
            actual = Enumerable.Range(0, (int)otherCount).Select(_ => NewValue(otherDtype)).ToArray();
        return new CloseCase(Layout(otherDtype, otherShape, actual), Layout(dtype, shape, expected), options);
    }

    // ---- values ---------------------------------------------------------------------------------------------

    private readonly record struct Value(double Re, double Im, long Int);

    private Value NewValue(DType dtype, Value? from = null)
    {
        switch (dtype.Kind)
        {
            case DTypeKind.Bool:
                return new(0, 0, from is { } f ? (f.Int != 0 || f.Re != 0 ? 1 : 0) : _random.Next(2));
            case DTypeKind.SignedInteger or DTypeKind.UnsignedInteger:
            {
                var (lo, hi) = Range(dtype);
                long v = from is { } g ? (long)Math.Clamp(double.IsFinite(g.Re) ? Math.Round(g.Re) : 0, lo, hi) + g.Int
                    : Chance(0.1) ? (Chance(0.5) ? lo : hi)
                    : _random.Next(-100, 100);
                return new(0, 0, Math.Clamp(v, lo, hi));
            }
            case DTypeKind.Float:
                return new(Round(dtype, from is { } h ? h.Re + h.Int : Float(dtype)), 0, 0);
            default:
                return new(Round(dtype, from is { } c ? c.Re + c.Int : Float(dtype)), Round(dtype, from is { } d ? d.Im : Float(dtype)), 0);
        }
    }

    private static (long Lo, long Hi) Range(DType dtype) => dtype.Name switch
    {
        "int8" => (sbyte.MinValue, sbyte.MaxValue),
        "uint8" => (0, byte.MaxValue),
        "int16" => (short.MinValue, short.MaxValue),
        "int32" => (int.MinValue, int.MaxValue),
        _ => (long.MinValue, long.MaxValue),
    };

    private double Float(DType dtype)
    {
        var max = Max(dtype);
        var tiny = MinSubnormal(dtype);
        return _random.Next(20) switch
        {
            0 => 0.0,
            1 => -0.0,
            2 => double.PositiveInfinity,
            3 => double.NegativeInfinity,
            4 => double.NaN,
            5 => tiny * _random.Next(1, 50) * Sign(),
            6 => max * (0.5 + (_random.NextDouble() / 2)) * Sign(),
            7 => 1.0 * Sign(),
            _ => Normal() * Math.Pow(10, _random.Next(-4, 4)),
        };
    }

    private Value Derive(Value e, DType dtype, double rtol, double atol)
    {
        switch (dtype.Kind)
        {
            case DTypeKind.Bool:
                return Chance(0.8) ? e : new(0, 0, 1 - e.Int);
            case DTypeKind.SignedInteger or DTypeKind.UnsignedInteger:
            {
                var (lo, hi) = Range(dtype);
                var step = _random.Next(8) switch
                {
                    0 or 1 or 2 or 3 => 0L,
                    4 => 1,
                    5 => -1,
                    6 => (long)Math.Round((atol + (rtol * Math.Abs((double)e.Int))) * (Chance(0.5) ? 1 : -1)),
                    _ => _random.Next(-300, 300),
                };
                if (Chance(0.05))
                    return new(0, 0, Chance(0.5) ? lo : hi);
                var v = step > 0 ? (e.Int > hi - step ? hi : e.Int + step) : (e.Int < lo - step ? lo : e.Int + step);
                return new(0, 0, Math.Clamp(v, lo, hi));
            }
            case DTypeKind.Float:
                return new(DeriveFloat(e.Re, dtype, rtol, atol), 0, 0);
            default:
                return Chance(0.5) ? new(DeriveFloat(e.Re, dtype, rtol, atol), e.Im, 0)
                                   : new(DeriveFloat(e.Re, dtype, rtol, atol), DeriveFloat(e.Im, dtype, rtol, atol), 0);
        }
    }

    private double DeriveFloat(double e, DType dtype, double rtol, double atol)
    {
        switch (_random.Next(12))
        {
            case 0 or 1 or 2 or 3:
                return e;
            case 4 or 5 or 6 or 7:
            {
                // At the boundary |a - e| = atol + rtol*|e|, then a few ulps either way.
                var allowed = atol + (rtol * Math.Abs(e));
                var a = Round(dtype, e + (Chance(0.5) ? allowed : -allowed));
                return Nudge(dtype, a, _random.Next(-2, 3));
            }
            case 8:
                return Round(dtype, e * (1 + (Normal() * 1e-3)));
            case 9:
                return e == 0 ? (double.IsNegative(e) ? 0.0 : -0.0) : Round(dtype, -e);
            default:
                return Float(dtype);
        }
    }

    // ---- dtype arithmetic -------------------------------------------------------------------------------------

    private static double Round(DType dtype, double x)
    {
        var d = dtype.Kind == DTypeKind.Complex ? (dtype == DType.Complex64 ? DType.Float32 : DType.Float64) : dtype;
        if (d == DType.Float64) return x;
        if (d == DType.Float32) return (float)x;
        if (d == DType.Float16) return (double)(Half)(float)x;
        return BFloat16(x);
    }

    private static double BFloat16(double x)
    {
        var f = (float)x;
        if (float.IsNaN(f)) return double.NaN;
        var bits = BitConverter.SingleToUInt32Bits(f);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }

    private static double Max(DType dtype) => dtype.Name switch
    {
        "float16" => 65504.0,
        "bfloat16" => 3.3895313892515355e38,
        "float32" or "complex64" => float.MaxValue,
        _ => double.MaxValue,
    };

    private static double MinSubnormal(DType dtype) => dtype.Name switch
    {
        "float16" => Math.Pow(2, -24),
        "bfloat16" => Math.Pow(2, -133),
        "float32" or "complex64" => float.Epsilon,
        _ => double.Epsilon,
    };

    /// <summary>Moves <paramref name="x"/> by <paramref name="ulps"/> representable values of the dtype.</summary>
    private static double Nudge(DType dtype, double x, int ulps)
    {
        if (!double.IsFinite(x))
            return x;
        for (var i = 0; i < Math.Abs(ulps); i++)
        {
            var up = ulps > 0;
            var d = dtype.Kind == DTypeKind.Complex ? (dtype == DType.Complex64 ? DType.Float32 : DType.Float64) : dtype;
            if (d == DType.Float64) x = up ? Math.BitIncrement(x) : Math.BitDecrement(x);
            else if (d == DType.Float32) x = up ? MathF.BitIncrement((float)x) : MathF.BitDecrement((float)x);
            else
            {
                // 16-bit formats: step a float by the format's ulp at x, then round back to the format.
                var f = (float)x;
                var ulp = d == DType.Float16 ? (double)(Half)f == 0 ? Math.Pow(2, -24) : Math.Max(Math.Pow(2, -24), Math.Pow(2, Math.Floor(Math.Log2(Math.Abs(f))) - 10))
                                             : f == 0 ? Math.Pow(2, -133) : Math.Max(Math.Pow(2, -133), Math.Pow(2, Math.Floor(Math.Log2(Math.Abs(f))) - 7));
                x = Round(d, x + (up ? ulp : -ulp));
            }
        }
        return x;
    }

    // ---- layouts ----------------------------------------------------------------------------------------------

    private OperandSpec Layout(DType dtype, long[] shape, Value[] values)
    {
        var rank = shape.Length;
        var strides = new long[rank];
        long offset = 0;
        long extent;
        switch (rank == 0 ? 0 : _random.Next(4))
        {
            case 1: // transposed storage: the first dimension varies fastest
            {
                long s = 1;
                for (var d = 0; d < rank; d++) { strides[d] = s; s *= Math.Max(shape[d], 1); }
                extent = s;
                break;
            }
            case 2: // every other element
            {
                long s = 2;
                for (var d = rank - 1; d >= 0; d--) { strides[d] = s; s *= Math.Max(shape[d], 1); }
                extent = s;
                break;
            }
            case 3: // an offset and padded rows
            {
                offset = 3;
                long s = 1;
                for (var d = rank - 1; d >= 0; d--) { strides[d] = s; s *= Math.Max(shape[d], 1) + (d == rank - 1 ? 1 : 0); }
                extent = s + offset;
                break;
            }
            default:
            {
                long s = 1;
                for (var d = rank - 1; d >= 0; d--) { strides[d] = s; s *= Math.Max(shape[d], 1); }
                extent = s;
                break;
            }
        }
        var storage = new byte[(extent + offset + 1) * dtype.ItemSize];
        // Fill the gaps with a recognisable pattern (never read by a correct view).
        for (var i = 0; i < storage.Length; i++)
            storage[i] = dtype == DType.Bool ? (byte)0 : (byte)0x7E;
        var index = new long[rank];
        for (var i = 0; i < values.Length; i++)
        {
            var at = offset;
            for (var d = 0; d < rank; d++)
                at += index[d] * strides[d];
            Encode(dtype, values[i], storage.AsSpan(checked((int)(at * dtype.ItemSize)), dtype.ItemSize));
            for (var d = rank - 1; d >= 0; d--)
            {
                if (++index[d] < shape[d])
                    break;
                index[d] = 0;
            }
        }
        return new OperandSpec(dtype, storage, shape, strides, offset);
    }

    private static void Encode(DType dtype, Value v, Span<byte> to)
    {
        switch (dtype.Name)
        {
            case "bool": to[0] = (byte)(v.Int != 0 ? 1 : 0); break;
            case "int8": to[0] = (byte)(sbyte)v.Int; break;
            case "uint8": to[0] = (byte)v.Int; break;
            case "int16": BinaryPrimitives.WriteInt16LittleEndian(to, (short)v.Int); break;
            case "int32": BinaryPrimitives.WriteInt32LittleEndian(to, (int)v.Int); break;
            case "int64": BinaryPrimitives.WriteInt64LittleEndian(to, v.Int); break;
            case "float16": BinaryPrimitives.WriteHalfLittleEndian(to, (Half)(float)v.Re); break;
            case "bfloat16": BinaryPrimitives.WriteUInt16LittleEndian(to, (ushort)(BitConverter.SingleToUInt32Bits((float)BFloat16(v.Re)) >> 16)); break;
            case "float32": BinaryPrimitives.WriteSingleLittleEndian(to, (float)v.Re); break;
            case "float64": BinaryPrimitives.WriteDoubleLittleEndian(to, v.Re); break;
            case "complex64":
                BinaryPrimitives.WriteSingleLittleEndian(to, (float)v.Re);
                BinaryPrimitives.WriteSingleLittleEndian(to[4..], (float)v.Im);
                break;
            default:
                BinaryPrimitives.WriteDoubleLittleEndian(to, v.Re);
                BinaryPrimitives.WriteDoubleLittleEndian(to[8..], v.Im);
                break;
        }
    }

    private bool Chance(double p) => _random.NextDouble() < p;

    private T Pick<T>(T[] items) => items[_random.Next(items.Length)];

    private double Sign() => Chance(0.5) ? 1 : -1;

    private double Normal() => Math.Sqrt(-2 * Math.Log(1 - _random.NextDouble())) * Math.Cos(2 * Math.PI * _random.NextDouble());
}
