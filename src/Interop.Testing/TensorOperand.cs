// Design notes: one side of a comparison, read into .NET once: dtype (from the one table), shape, strides in
// elements (for check_stride) and the values in C order, exactly (floats of every width widen to double without
// loss, integers and bools to long, complex to two doubles). Everything the comparer needs, nothing that keeps
// foreign memory alive, so operands made from Python or TorchSharp values stay valid after those are disposed.
// TorchSharp tensors are read in TorchSharpOperands, a separate class, so that this class never loads TorchSharp.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.NumPy;
using Interop.Sessions;
using Interop.Torch;

namespace Interop.Testing;

/// <summary>
/// A tensor's dtype, shape, strides and values, read into .NET (a copy) for <see cref="TensorAssert"/>. Made from .NET
/// arrays of any rank, spans with a shape, <see cref="ReadOnlyTensorSpan{T}"/>, <see cref="NDArray"/>,
/// <see cref="TorchTensor"/>, tensor <see cref="PythonValue"/>s and TorchSharp tensors (<see cref="From(object)"/>).
/// </summary>
public sealed class TensorOperand
{
    private TensorOperand(DType dtype, long[] shape, long[] strides)
    {
        DType = dtype;
        Shape = shape;
        Strides = strides;
        ElementCount = shape.Aggregate(1L, (a, b) => checked(a * b));
    }

    /// <summary>The dtype.</summary>
    public DType DType { get; }

    /// <summary>The dimensions (empty for a 0-d tensor).</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>The strides in elements, as PyTorch's <c>stride()</c> gives them (C order for .NET arrays and spans).</summary>
    public IReadOnlyList<long> Strides { get; }

    /// <summary>The number of elements.</summary>
    public long ElementCount { get; }

    /// <summary>Float values (and complex real parts), exact; null for integer and bool dtypes.</summary>
    internal double[]? Real { get; private set; }

    /// <summary>Complex imaginary parts; null unless complex.</summary>
    internal double[]? Imaginary { get; private set; }

    /// <summary>Integer and bool values; null for float and complex dtypes (uint64 above <c>long.MaxValue</c> wraps).</summary>
    internal long[]? Integers { get; private set; }

    /// <summary>A short description: <c>float32 (2, 3)</c>.</summary>
    public override string ToString() => $"{DType} ({string.Join(", ", Shape)})";

    // ---- factories ---------------------------------------------------------------------------------------

    /// <summary>
    /// Reads any supported value: <see cref="TensorOperand"/>, a .NET array of any rank, <see cref="Tensor{T}"/>,
    /// <see cref="NDArray"/>, <see cref="TorchTensor"/>, a tensor <see cref="PythonValue"/>, or a TorchSharp tensor.
    /// Spans and tensor spans cannot be boxed: use <see cref="FromSpan{T}(ReadOnlySpan{T}, long[])"/> and <see cref="FromTensorSpan{T}"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The value is of another type (the message lists the supported ones).</exception>
    public static TensorOperand From(object value)
    {
        ArgumentNullException.ThrowIfNull(value);
        switch (value)
        {
            case TensorOperand o:
                return o;
            case Array a:
                return FromArray(a);
            case NDArray n:
                return FromNDArray(n);
            case TorchTensor t:
                return FromTorchTensor(t);
            case PythonValue v:
                return FromPythonValue(v);
            case TensorArgument arg:
                return FromBytes(arg.Bytes, arg.DType, [.. arg.Shape]);
        }
        var type = value.GetType();
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Tensor<>))
            return (TensorOperand)typeof(TensorOperand).GetMethod(nameof(FromTensor))!.MakeGenericMethod(type.GetGenericArguments()[0]).Invoke(null, [value])!;
        if (IsTorchSharpTensor(value))
            return TorchSharpOperands.Read(value);
        throw new ArgumentException(
            $"A {type} cannot be compared as a tensor. Supported: TorchSharp tensors, NDArray, TorchTensor, tensor PythonValue, " +
            ".NET arrays of any rank, Tensor<T>, TensorArgument, and (through TensorOperand.FromSpan / FromTensorSpan) spans with a shape.", nameof(value));
    }

    /// <summary>By type name, so that this class never references (and the JIT never loads) TorchSharp.</summary>
    internal static bool IsTorchSharpTensor(object value)
    {
        for (var t = value.GetType(); t is not null; t = t.BaseType)
            if (t.FullName == "TorchSharp.torch+Tensor")
                return true;
        return false;
    }

    /// <summary>A .NET array of any rank (<c>float[,]</c>, ...), with its shape.</summary>
    /// <exception cref="NotSupportedException">The element type has no dtype.</exception>
    public static TensorOperand FromArray(Array array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var dtype = DType.Of(array.GetType().GetElementType()!);
        var shape = Enumerable.Range(0, array.Rank).Select(d => (long)array.GetLength(d)).ToArray();
        var bytes = MemoryMarshal.CreateReadOnlySpan(ref MemoryMarshal.GetArrayDataReference(array), checked(array.Length * dtype.ItemSize));
        return FromBytes(bytes, dtype, shape);
    }

    /// <summary>Elements in C order with a shape (default: 1-d).</summary>
    /// <exception cref="ArgumentException">The shape does not hold exactly <c>data.Length</c> elements.</exception>
    public static TensorOperand FromSpan<T>(ReadOnlySpan<T> data, params long[] shape) where T : unmanaged
    {
        shape = shape is null || shape.Length == 0 ? [data.Length] : (long[])shape.Clone();
        return FromBytes(MemoryMarshal.AsBytes(data), DType.Of<T>(), shape);
    }

    /// <summary>A 0-d tensor (shape <c>()</c>).</summary>
    public static TensorOperand Scalar<T>(T value) where T : unmanaged =>
        FromBytes(MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)), DType.Of<T>(), []);

    /// <summary>bfloat16 elements given as their 16-bit patterns (.NET has no bfloat16 type), in C order.</summary>
    public static TensorOperand FromBFloat16Bits(ReadOnlySpan<ushort> bits, params long[] shape)
    {
        shape = shape is null || shape.Length == 0 ? [bits.Length] : (long[])shape.Clone();
        return FromBytes(MemoryMarshal.AsBytes(bits), DType.BFloat16, shape);
    }

    /// <summary>A tensor span (any strides); its strides are kept for <c>CheckStride</c>.</summary>
    public static TensorOperand FromTensorSpan<T>(scoped in ReadOnlyTensorSpan<T> tensor) where T : unmanaged
    {
        var data = new T[tensor.FlattenedLength];
        tensor.FlattenTo(data);
        var shape = tensor.Lengths.ToArray().Select(d => (long)d).ToArray();
        var result = FromBytes(MemoryMarshal.AsBytes(data.AsSpan()), DType.Of<T>(), shape);
        return result.WithStrides(tensor.Strides.ToArray().Select(s => (long)s).ToArray());
    }

    /// <summary>A <see cref="Tensor{T}"/>.</summary>
    public static TensorOperand FromTensor<T>(Tensor<T> tensor) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return FromTensorSpan<T>(tensor.AsReadOnlyTensorSpan());
    }

    /// <summary>A NumPy array (any layout, byte order normalised by the copy).</summary>
    public static TensorOperand FromNDArray(NDArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var dtype = array.DType;
        var shape = array.Shape;
        var strides = array.Strides.Select(s => s / dtype.ItemSize).ToArray();
        var bytes = dtype.ClrType switch
        {
            { } t when t == typeof(bool) => Bytes(array.ToArray<bool>()),
            { } t when t == typeof(sbyte) => Bytes(array.ToArray<sbyte>()),
            { } t when t == typeof(short) => Bytes(array.ToArray<short>()),
            { } t when t == typeof(int) => Bytes(array.ToArray<int>()),
            { } t when t == typeof(long) => Bytes(array.ToArray<long>()),
            { } t when t == typeof(byte) => Bytes(array.ToArray<byte>()),
            { } t when t == typeof(ushort) => Bytes(array.ToArray<ushort>()),
            { } t when t == typeof(uint) => Bytes(array.ToArray<uint>()),
            { } t when t == typeof(ulong) => Bytes(array.ToArray<ulong>()),
            { } t when t == typeof(Half) => Bytes(array.ToArray<Half>()),
            { } t when t == typeof(float) => Bytes(array.ToArray<float>()),
            { } t when t == typeof(double) => Bytes(array.ToArray<double>()),
            { } t when t == typeof(ComplexFloat) => Bytes(array.ToArray<ComplexFloat>()),
            { } t when t == typeof(Complex) => Bytes(array.ToArray<Complex>()),
            _ => throw new NotSupportedException($"NumPy dtype {dtype} cannot be compared."),
        };
        return FromBytes(bytes, dtype, shape).WithStrides(strides);
    }

    /// <summary>A PyTorch tensor (through its export to NumPy; bfloat16 is read through an exact float32 upcast and keeps its dtype).</summary>
    public static TensorOperand FromTorchTensor(TorchTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var dtypeName = tensor.DTypeName;
        var dtype = DType.FromName(dtypeName.StartsWith("torch.", StringComparison.Ordinal) ? dtypeName : "torch." + dtypeName)
                    ?? throw new NotSupportedException($"PyTorch dtype {dtypeName} cannot be compared.");
        var strides = Interop.Embedding.PythonRuntime.Run(() =>
        {
            using var s = tensor.PyObject.InvokeMethod("stride");
            var result = new long[s.Length()];
            for (var i = 0; i < result.Length; i++)
            {
                using var item = s[i];
                result[i] = item.As<long>();
            }
            return result;
        });
        using var array = tensor.Numpy(new ExportOptions { Upcast = dtype == DType.BFloat16 });
        var read = FromNDArray(array);
        return (dtype == read.DType ? read : read.Relabel(dtype)).WithStrides(strides);
    }

    /// <summary>A tensor result of a session call (any strides).</summary>
    /// <exception cref="Errors.PythonValueKindException">The value is not a tensor.</exception>
    public static TensorOperand FromPythonValue(PythonValue value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return FromTensorData(value.AsTensorData());
    }

    /// <summary>Tensor memory of a session result (any strides, in bytes as <see cref="TensorData"/> gives them).</summary>
    public static TensorOperand FromTensorData(TensorData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var shape = data.Shape.ToArray();
        var byteStrides = data.Strides.ToArray();
        return FromMemory(data.Address, data.DType, shape, byteStrides);
    }

    /// <summary>
    /// Reads strided memory at <paramref name="address"/> (strides in bytes); the caller keeps it valid during the call.
    /// For integration with other tensor libraries.
    /// </summary>
    public static TensorOperand FromMemory(nint address, DType dtype, long[] shape, long[] byteStrides)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(byteStrides);
        if (byteStrides.Length != shape.Length)
            throw new ArgumentException($"{byteStrides.Length} strides for {shape.Length} dimensions.", nameof(byteStrides));
        long low = 0, high = 0;
        var empty = shape.Any(d => d == 0);
        for (var d = 0; d < shape.Length && !empty; d++)
        {
            var reach = (shape[d] - 1) * byteStrides[d];
            if (reach < 0) low += reach; else high += reach;
        }
        var extent = empty ? 0 : checked((int)(high - low + dtype.ItemSize));
        var copy = new byte[extent];
        if (extent > 0)
            Marshal.Copy(address + (nint)low, copy, 0, extent);
        var result = new TensorOperand(dtype, shape, byteStrides.Select(s => s / dtype.ItemSize).ToArray());
        result.Decode(copy, -low, byteStrides);
        return result;
    }

    /// <summary>
    /// A strided view of <paramref name="storage"/> (strides and offset in elements, not negative), as
    /// <c>torch.as_strided(storage, shape, strides, offset)</c> would see it.
    /// </summary>
    /// <exception cref="ArgumentException">The view reaches outside the storage, or a stride is negative.</exception>
    public static TensorOperand FromStorage(ReadOnlySpan<byte> storage, DType dtype, long[] shape, long[] strides, long offset)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(strides);
        if (strides.Length != shape.Length || strides.Any(s => s < 0) || offset < 0)
            throw new ArgumentException("Strides must be one per dimension and not negative, the offset not negative.", nameof(strides));
        var last = offset;
        var empty = shape.Any(d => d == 0);
        for (var d = 0; d < shape.Length && !empty; d++)
            last += (shape[d] - 1) * strides[d];
        if (!empty && (last + 1) * dtype.ItemSize > storage.Length)
            throw new ArgumentException($"The view reaches element {last}; the storage holds {storage.Length / dtype.ItemSize}.", nameof(storage));
        var result = new TensorOperand(dtype, (long[])shape.Clone(), (long[])strides.Clone());
        result.Decode(storage, offset * dtype.ItemSize, strides.Select(s => s * dtype.ItemSize).ToArray());
        return result;
    }

    // ---- decoding ----------------------------------------------------------------------------------------

    internal static TensorOperand FromBytes(ReadOnlySpan<byte> bytes, DType dtype, long[] shape)
    {
        var count = shape.Aggregate(1L, (a, b) => checked(a * b));
        if (shape.Any(d => d < 0) || count * dtype.ItemSize != bytes.Length)
            throw new ArgumentException($"Shape ({string.Join(", ", shape)}) needs {count} elements; the data holds {bytes.Length / dtype.ItemSize}.", nameof(shape));
        var strides = CStrides(shape);
        var result = new TensorOperand(dtype, shape, strides);
        result.Decode(bytes, 0, strides.Select(s => s * dtype.ItemSize).ToArray());
        return result;
    }

    private static byte[] Bytes<T>(T[] data) where T : unmanaged => MemoryMarshal.AsBytes(data.AsSpan()).ToArray();

    internal static long[] CStrides(IReadOnlyList<long> shape)
    {
        var strides = new long[shape.Count];
        long s = 1;
        for (var d = shape.Count - 1; d >= 0; d--)
        {
            strides[d] = s;
            s *= Math.Max(shape[d], 1);
        }
        return strides;
    }

    internal TensorOperand WithStrides(long[] strides)
    {
        var copy = new TensorOperand(DType, [.. Shape], strides) { Real = Real, Imaginary = Imaginary, Integers = Integers };
        return copy;
    }

    private TensorOperand Relabel(DType dtype) =>
        new(dtype, [.. Shape], [.. Strides]) { Real = Real, Imaginary = Imaginary, Integers = Integers };

    /// <summary>The values converted to <paramref name="dtype"/> as a tensor cast (<c>Tensor.to</c>) converts them.</summary>
    internal TensorOperand CastTo(DType dtype)
    {
        if (dtype == DType)
            return this;
        var n = checked((int)ElementCount);
        var result = new TensorOperand(dtype, [.. Shape], [.. Strides]);
        switch (dtype.Kind)
        {
            case DTypeKind.Float:
            {
                var kind = Kinds.Float(dtype);
                var real = new double[n];
                for (var i = 0; i < n; i++)
                    real[i] = Rounding.Convert(kind, Integers is not null ? (double)Integers[i] : Real![i]);
                result.Real = real;
                break;
            }
            case DTypeKind.Complex:
            {
                var kind = Kinds.Float(dtype);
                var real = new double[n];
                var imag = new double[n];
                for (var i = 0; i < n; i++)
                {
                    real[i] = Rounding.Convert(kind, Integers is not null ? (double)Integers[i] : Real![i]);
                    imag[i] = Imaginary is null ? 0 : Rounding.Convert(kind, Imaginary[i]);
                }
                result.Real = real;
                result.Imaginary = imag;
                break;
            }
            default:
            {
                // Integer widening (promotion never narrows integers, and never turns floats into integers).
                result.Integers = Integers ?? throw new InvalidOperationException($"{DType} does not promote to {dtype}.");
                break;
            }
        }
        return result;
    }

    private void Decode(ReadOnlySpan<byte> bytes, long offset, long[] byteStrides)
    {
        var n = checked((int)ElementCount);
        var kind = DType.Kind;
        double[]? real = kind is DTypeKind.Float or DTypeKind.Complex ? new double[n] : null;
        double[]? imag = kind == DTypeKind.Complex ? new double[n] : null;
        long[]? ints = real is null ? new long[n] : null;
        var rank = Shape.Count;
        var index = new long[rank];
        var position = offset;
        for (var i = 0; i < n; i++)
        {
            var at = bytes[checked((int)position)..];
            if (ints is not null)
                ints[i] = ReadInteger(at);
            else if (imag is null)
                real![i] = ReadFloat(at, 0);
            else
            {
                real![i] = ReadFloat(at, 0);
                imag[i] = ReadFloat(at, DType.ItemSize / 2);
            }
            // Next C-order index.
            for (var d = rank - 1; d >= 0; d--)
            {
                index[d]++;
                position += byteStrides[d];
                if (index[d] < Shape[d])
                    break;
                position -= index[d] * byteStrides[d];
                index[d] = 0;
            }
        }
        Real = real;
        Imaginary = imag;
        Integers = ints;
    }

    private long ReadInteger(ReadOnlySpan<byte> at)
    {
        var d = DType;
        if (d == DType.Bool) return at[0] != 0 ? 1 : 0;
        if (d == DType.Int8) return (sbyte)at[0];
        if (d == DType.UInt8) return at[0];
        if (d == DType.Int16) return Read<short>(at);
        if (d == DType.UInt16) return Read<ushort>(at);
        if (d == DType.Int32) return Read<int>(at);
        if (d == DType.UInt32) return Read<uint>(at);
        if (d == DType.Int64) return Read<long>(at);
        return unchecked((long)Read<ulong>(at));
    }

    private double ReadFloat(ReadOnlySpan<byte> at, int offset)
    {
        at = at[offset..];
        var d = DType;
        if (d == DType.Float16) return (double)Read<Half>(at);
        if (d == DType.BFloat16) return Rounding.FromBFloat16Bits(Read<ushort>(at));
        if (d == DType.Float32 || d == DType.Complex64) return Read<float>(at);
        return Read<double>(at);
    }

    private static T Read<T>(ReadOnlySpan<byte> at) where T : unmanaged => MemoryMarshal.Read<T>(at);
}
