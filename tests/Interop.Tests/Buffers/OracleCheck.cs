using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Interop.Buffers;
using Interop.Errors;
using Interop.NumPy;

namespace Interop.Tests.Buffers;

/// <summary>
/// Compares everything .NET sees of an array with NumPy's facts about it: ToArray/CopyTo bytes (every layout, byte
/// order and alignment), shape and strides, when AsReadOnlySpan is allowed, and the tensor span at every index.
/// </summary>
internal sealed class OracleCheck(NDArray array, NumPyFacts facts) : ITypedCheck
{
    public void Run<T>() where T : unmanaged
    {
        var what = facts.Describe();
        var size = Unsafe.SizeOf<T>();
        Assert.That(array.ToArray<T>().AsBytes(), Is.EqualTo(facts.Bytes), "NDArray.ToArray: " + what);
        var destination = new T[facts.Bytes.Length / size];
        array.CopyTo<T>(destination);
        Assert.That(destination.AsBytes(), Is.EqualTo(facts.Bytes), "NDArray.CopyTo: " + what);
        Assert.That(array.Shape, Is.EqualTo(facts.Shape), "NDArray.Shape: " + what);
        Assert.That(array.Strides, Is.EqualTo(facts.Strides), "NDArray.Strides is arr.strides (also for zero-size arrays and length-1 dimensions): " + what);
        Assert.That(facts.SignificantStrides(array.Strides), Is.EqualTo(facts.SignificantStrides(facts.Strides)), "NDArray.Strides vs arr.strides: " + what);
        Assert.That(array.IsBigEndian, Is.EqualTo(!facts.NativeOrder && BitConverter.IsLittleEndian), "NDArray.IsBigEndian: " + what);

        if (!facts.NativeOrder)
        {
            Assert.Throws<ByteOrderException>(() => array.ViewReadOnly<T>().Dispose(), "a view of non-native bytes: " + what);
            return;
        }

        using var view = array.ViewReadOnly<T>();
        Assert.Multiple(() =>
        {
            Assert.That(view.Shape.ToArray().Select(s => (long)s), Is.EqualTo(facts.Shape), "view shape: " + what);
            var strides = view.Strides.ToArray().Select(s => (long)s).ToArray();
            Assert.That(strides, Is.EqualTo(facts.BufferStrides), "view strides vs memoryview(arr).strides: " + what);
            Assert.That(facts.SignificantStrides(strides), Is.EqualTo(facts.SignificantStrides(facts.Strides)), "view strides vs arr.strides: " + what);
            Assert.That(view.Rank, Is.EqualTo(facts.Shape.Length));
            Assert.That((long)view.Length, Is.EqualTo(facts.Bytes.Length / size));
            Assert.That(view.DType.NumPyName, Is.EqualTo(facts.DTypeName));
            Assert.That(view.IsCContiguous, Is.EqualTo(facts.CContiguous), "IsCContiguous: " + what);
        });
        Assert.That(view.ToArray().AsBytes(), Is.EqualTo(facts.Bytes), "ArrayView.ToArray: " + what);

        if (facts.CContiguous && facts.Aligned)
            Assert.That(MemoryMarshal.AsBytes(view.AsReadOnlySpan()).ToArray(), Is.EqualTo(facts.Bytes), "AsReadOnlySpan: " + what);
        else
            Assert.Throws<LayoutException>(() => view.AsReadOnlySpan(), "AsReadOnlySpan must refuse: " + what);

        if (facts.HasNegativeStride || !facts.Aligned || facts.HasInterleavedStrides)
        {
            Assert.Throws<LayoutException>(() => view.AsReadOnlyTensorSpan(), "AsReadOnlyTensorSpan must refuse: " + what);
            return;
        }
        CompareTensorSpan<T>(view, facts, what);
    }

    private static void CompareTensorSpan<T>(ArrayView<T> view, NumPyFacts facts, string what) where T : unmanaged
    {
        var size = Unsafe.SizeOf<T>();
        var tensor = view.AsReadOnlyTensorSpan();
        var shape = facts.Shape.Length == 0 ? new long[] { 1 } : facts.Shape;
        Assert.That(tensor.Lengths.ToArray().Select(l => (long)l), Is.EqualTo(shape), "tensor lengths: " + what);
        var count = facts.Bytes.Length / size;
        Assert.That((long)tensor.FlattenedLength, Is.EqualTo(count), "tensor length: " + what);
        var index = new nint[shape.Length];
        var wrong = new List<string>();
        for (var flat = 0; flat < count; flat++)
        {
            var rest = flat;
            for (var d = shape.Length - 1; d >= 0; d--)
            {
                index[d] = (nint)(rest % shape[d]);
                rest = (int)(rest / shape[d]);
            }
            var actual = tensor[index];
            var actualBytes = MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in actual));
            if (!actualBytes.SequenceEqual(facts.Bytes.AsSpan(flat * size, size)))
                wrong.Add($"[{string.Join(", ", index)}]");
        }
        Assert.That(wrong, Is.Empty, "tensor span elements differ from NumPy's: " + what);
    }
}

internal static class ByteExtensions
{
    public static byte[] AsBytes<T>(this T[] values) where T : unmanaged => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
