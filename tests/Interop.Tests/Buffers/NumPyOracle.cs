using System.Globalization;
using Interop.DTypes;
using Interop.Embedding;
using Interop.NumPy;
using Python.Runtime;

namespace Interop.Tests.Buffers;

/// <summary>What NumPy itself says about an array: the oracle every buffer test compares against.</summary>
/// <param name="Shape">arr.shape.</param>
/// <param name="Strides">arr.strides (bytes).</param>
/// <param name="Bytes">The elements in C order and native byte order: np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder('=')).tobytes().</param>
/// <param name="CContiguous">arr.flags.c_contiguous.</param>
/// <param name="Aligned">arr.flags.aligned.</param>
/// <param name="NativeOrder">arr.dtype.isnative.</param>
/// <param name="Writeable">arr.flags.writeable.</param>
/// <param name="DTypeName">str(arr.dtype).</param>
/// <param name="BufferStrides">memoryview(arr).strides: what NumPy's buffer export says. NumPy exports C strides for every
/// C-contiguous array, so these differ from arr.strides where the stride cannot matter (a dimension of length 1, or an
/// empty array: NumPy 1.24 gives np.empty((0, 3)).strides == (0, 0) but exports (3 * itemsize, itemsize)).</param>
internal sealed record NumPyFacts(long[] Shape, long[] Strides, byte[] Bytes, bool CContiguous, bool Aligned, bool NativeOrder, bool Writeable, string DTypeName, long[] BufferStrides)
{
    /// <summary>
    /// True when, ordering the dimensions that decide addresses by stride, one stride is below the extent of the
    /// next smaller one: valid in NumPy (e.g. a[:, ::3] of a (2, 5) array), refused by System.Numerics.Tensors.
    /// </summary>
    public bool HasInterleavedStrides
    {
        get
        {
            if (Shape.Contains(0))
                return false;
            var dims = Shape.Zip(BufferStrides).Where(p => p.First > 1 && p.Second > 0).OrderBy(p => p.Second).ToArray();
            for (var k = 1; k < dims.Length; k++)
                if (dims[k].Second < dims[k - 1].Second * dims[k - 1].First)
                    return true;
            return false;
        }
    }

    /// <summary>arr.strides where a stride decides an address (length > 1, non-empty array); null elsewhere.</summary>
    public long?[] SignificantStrides(IReadOnlyList<long> strides) =>
        Shape.Select((n, i) => n > 1 && !Shape.Contains(0) ? strides[i] : (long?)null).ToArray();

    /// <summary>True when a negative stride decides an address (not in an empty array, not on a dimension of length 1).</summary>
    public bool HasNegativeStride => !Shape.Contains(0) && Shape.Zip(Strides).Any(p => p.First > 1 && p.Second < 0);

    public string Describe() => $"{DTypeName} shape ({string.Join(", ", Shape)}) strides ({string.Join(", ", Strides)}) " +
                                $"c_contiguous={CContiguous} aligned={Aligned} native={NativeOrder}";
}

/// <summary>
/// A Python scope, shared by the buffer tests, with NumPy and helpers that build test arrays (extreme values,
/// NaN payloads, every layout) and describe them. Everything runs with the GIL.
/// </summary>
internal static class NumPyOracle
{
    private const string Helpers = """"
        import gc
        import weakref
        import numpy as np

        _NAN_PAYLOADS = {2: (0x7E01, 0xFE3F), 4: (0x7FC00123, 0xFF812345), 8: (0x7FF8000000000123, 0xFFF4000000012345)}

        def extremes(dt):
            dt = np.dtype(dt)
            k = dt.kind
            if k == 'b':
                return np.array([True, False, False, True], dtype=dt)
            if k in 'iu':
                info = np.iinfo(dt)
                lo, hi = int(info.min), int(info.max)
                vals = [lo, hi, 0, 1, lo + 1, hi - 1, hi // 3]
                if k == 'i':
                    vals += [-1, -2]
                return np.array(vals, dtype=dt)
            if k == 'f':
                fi = np.finfo(dt)
                plain = np.array([np.nan, np.inf, -np.inf, -0.0, fi.max, fi.min, fi.tiny, fi.smallest_subnormal, fi.eps, 1 / 3], dtype=dt)
                nans = np.array(_NAN_PAYLOADS[dt.itemsize], dtype='u%d' % dt.itemsize).view(dt)
                return np.concatenate([plain, nans])
            if k == 'c':
                fi = np.finfo(dt)
                part = np.dtype('f%d' % (dt.itemsize // 2))
                re = np.array([1.5, np.nan, np.inf, -0.0, fi.max, fi.tiny, 1 / 3, -np.inf], dtype=part)
                im = np.array([-2.25, 1.0, -np.inf, 0.0, fi.min, fi.smallest_subnormal, -1 / 7, np.nan], dtype=part)
                out = np.empty(len(re), dtype=dt)
                out.real = re
                out.imag = im
                return out
            raise TypeError(dt)

        def values(dt, shape):
            """Distinct, position-dependent values of dtype dt, starting with the dtype's extremes."""
            dt = np.dtype(dt)
            n = int(np.prod(shape, dtype=np.int64))
            i = np.arange(n, dtype=np.int64)
            k = dt.kind
            if k == 'b':
                out = (i % 3) == 1
            elif k in 'iu':
                out = (i * 7919 + 3).astype(dt)
            elif k == 'f':
                out = (i * 0.375 - 3.0).astype(dt)
            else:
                out = (i * 0.375 - 1j * (i * 1.125 + 0.5)).astype(dt)
            ext = extremes(dt)
            m = min(n, len(ext))
            out[:m] = ext[:m]
            return out.reshape(shape)

        def misaligned(a, offset=1):
            """A C-contiguous copy of a whose data starts offset bytes past a 16-byte aligned address (writable)."""
            raw = np.zeros(a.nbytes + offset + 16, dtype=np.uint8)
            start = (-raw.ctypes.data) % 16 + offset
            m = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
            m[...] = a
            return m

        def big_endian(a):
            return a.astype(a.dtype.newbyteorder('>'))

        def read_only(a):
            a.setflags(write=False)
            return a

        LAYOUTS = {
            'c_order': lambda dt: values(dt, (4, 5)),
            'fortran': lambda dt: np.asfortranarray(values(dt, (4, 5))),
            'step_rows': lambda dt: values(dt, (8, 5))[::2],
            'slice_columns': lambda dt: values(dt, (4, 6))[:, 1:],
            'transposed': lambda dt: values(dt, (5, 4)).T,
            'negative_rows': lambda dt: values(dt, (4, 5))[::-1],
            'negative_columns': lambda dt: values(dt, (4, 5))[:, ::-2],
            'interleaved_columns': lambda dt: values(dt, (4, 5))[:, ::3],
            'broadcast': lambda dt: np.broadcast_to(values(dt, (5,)), (4, 5)),
            'zero_d': lambda dt: np.array(values(dt, (1,))[0]),
            'zero_size': lambda dt: np.empty((0, 3), dtype=dt),
            'three_d_permuted': lambda dt: values(dt, (2, 3, 4)).transpose(2, 0, 1),
            'big_endian': lambda dt: big_endian(values(dt, (4, 5))),
            'big_endian_transposed': lambda dt: big_endian(values(dt, (5, 4))).T,
            'misaligned': lambda dt: misaligned(values(dt, (4, 5))),
            'misaligned_strided': lambda dt: misaligned(values(dt, (4, 6)))[:, ::2],
            'half_item_offset': lambda dt: misaligned(values(dt, (4, 5)), max(1, np.dtype(dt).itemsize // 2)),
        }

        def describe(a):
            expected = np.ascontiguousarray(a).astype(a.dtype.newbyteorder('='))
            return (list(a.shape), list(a.strides), expected.tobytes().hex(), bool(a.flags.c_contiguous),
                    bool(a.flags.aligned), bool(a.dtype.isnative), bool(a.flags.writeable), str(a.dtype),
                    list(memoryview(a).strides))
        """";

    private static PyModule? s_scope;

    /// <summary>The layouts in the helper's LAYOUTS table.</summary>
    public static readonly string[] Layouts =
    [
        "c_order", "fortran", "step_rows", "slice_columns", "transposed", "negative_rows", "negative_columns", "interleaved_columns", "broadcast",
        "zero_d", "zero_size", "three_d_permuted", "big_endian", "big_endian_transposed", "misaligned", "misaligned_strided", "half_item_offset",
    ];

    /// <summary>Every dtype of the table that NumPy has.</summary>
    public static IEnumerable<DType> NumPyDTypes => DType.All.Where(d => d.NumPyName is not null);

    private static PyModule Scope
    {
        get
        {
            Assert.That(Gil.IsHeld, "the oracle needs the GIL");
            if (s_scope is null)
            {
                var scope = Py.CreateScope("interop_buffer_oracle");
                scope.Exec(Helpers);
                s_scope = scope;
            }
            return s_scope;
        }
    }

    /// <summary>Runs Python statements in the shared scope.</summary>
    public static void Exec(string code) => PythonRuntime.Run(() =>
    {
        Scope.Exec(code);
        return 0;
    });

    /// <summary>Evaluates a Python expression in the shared scope and converts the result.</summary>
    public static T Eval<T>(string expression) => PythonRuntime.Run(() =>
    {
        using var value = Scope.Eval(typeof(T) == typeof(bool) ? $"bool({expression})" : expression);
        return value.As<T>();
    });

    /// <summary>Evaluates an expression that yields an ndarray.</summary>
    public static NDArray Array(string expression) => PythonRuntime.Run(() =>
    {
        using var value = Scope.Eval(expression);
        return NDArray.Wrap(value);
    });

    /// <summary>Evaluates an expression that yields an ndarray, and asks NumPy for the facts about that same object.</summary>
    public static (NDArray Array, NumPyFacts Facts) ArrayWithFacts(string expression) => PythonRuntime.Run(() =>
    {
        using var value = Scope.Eval(expression);
        using var describe = Scope.Get("describe");
        using var d = describe.Invoke(value);
        var facts = new NumPyFacts(
            Longs(d[0]), Longs(d[1]), Convert.FromHexString(d[2].As<string>()),
            d[3].As<bool>(), d[4].As<bool>(), d[5].As<bool>(), d[6].As<bool>(), d[7].As<string>(), Longs(d[8]));
        return (NDArray.Wrap(value), facts);
    });

    /// <summary>The expression that builds layout <paramref name="layout"/> of <paramref name="dtype"/>.</summary>
    public static string LayoutExpression(DType dtype, string layout) => $"LAYOUTS['{layout}']('{dtype.NumPyName}')";

    private static long[] Longs(PyObject list)
    {
        using (list)
        {
            var result = new long[list.Length()];
            for (var i = 0; i < result.Length; i++)
            {
                using var item = list[i];
                result[i] = item.As<long>();
            }
            return result;
        }
    }

    /// <summary>Python's repr of a string literal, for building expressions.</summary>
    public static string Literal(string s) => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    /// <summary>Formats an integer for a Python expression.</summary>
    public static string Int(long value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A check that needs the element type as a generic argument.</summary>
internal interface ITypedCheck
{
    void Run<T>() where T : unmanaged;
}

/// <summary>Calls a generic check with the .NET element type of a dtype.</summary>
internal static class Typed
{
    private static readonly Dictionary<Type, Action<ITypedCheck>> s_calls = new()
    {
        [typeof(bool)] = c => c.Run<bool>(),
        [typeof(sbyte)] = c => c.Run<sbyte>(),
        [typeof(short)] = c => c.Run<short>(),
        [typeof(int)] = c => c.Run<int>(),
        [typeof(long)] = c => c.Run<long>(),
        [typeof(byte)] = c => c.Run<byte>(),
        [typeof(ushort)] = c => c.Run<ushort>(),
        [typeof(uint)] = c => c.Run<uint>(),
        [typeof(ulong)] = c => c.Run<ulong>(),
        [typeof(Half)] = c => c.Run<Half>(),
        [typeof(float)] = c => c.Run<float>(),
        [typeof(double)] = c => c.Run<double>(),
        [typeof(ComplexFloat)] = c => c.Run<ComplexFloat>(),
        [typeof(System.Numerics.Complex)] = c => c.Run<System.Numerics.Complex>(),
    };

    public static void Run(DType dtype, ITypedCheck check) => s_calls[dtype.ClrType!](check);
}
