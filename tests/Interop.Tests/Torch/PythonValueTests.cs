using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Errors;
using Interop.Sessions;

namespace Interop.Tests.Torch;

/// <summary>PythonValue and TensorData as any session builds them (no Python needed): the accessors every session shares.</summary>
[TestFixture]
public class PythonValueTests
{
    [Test]
    public void Tensor_values_over_bytes_give_span_copies_and_tensors()
    {
        var data = new int[] { 1, 2, 3, 4, 5, 6 };
        using var value = PythonValue.FromTensor(TensorData.FromBytes(MemoryMarshal.AsBytes<int>(data), DType.Int32, 2, 3));
        data[0] = 100;
        Assert.Multiple(() =>
        {
            Assert.That(value.Kind, Is.EqualTo(PythonValueKind.Tensor));
            Assert.That(value.Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(value.DType, Is.SameAs(DType.Int32));
            Assert.That(value.AsReadOnlySpan<int>().ToArray(), Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6 }), "FromBytes copies");
            Assert.That(value.ToTensor<int>()[1, 2], Is.EqualTo(6));
            Assert.That(value.ToMultidimensionalArray<int>(), Is.EqualTo(new int[,] { { 1, 2, 3 }, { 4, 5, 6 } }));
            Assert.That(value.AsTensorData().Strides, Is.EqualTo(new long[] { 12, 4 }));
        });
        Assert.Throws<ElementTypeMismatchException>(() => value.ToArray<float>());
        Assert.Throws<ArgumentException>(() => value.CopyTo<int>(new int[5]));
        Assert.Throws<PythonValueKindException>(() => value.AsInt64());
    }

    [Test]
    public void FromBytes_checks_the_length_against_the_shape()
    {
        Assert.Throws<ArgumentException>(() => TensorData.FromBytes(new byte[12], DType.Float32, 2, 2));
        using var scalar = TensorData.FromBytes(BitConverter.GetBytes(2.5), DType.Float64);
        Assert.That(scalar.ElementCount, Is.EqualTo(1), "no dimensions: a 0-d tensor");
    }

    [Test]
    public void Containers_own_and_dispose_their_items()
    {
        var tensor = PythonValue.FromTensor(TensorData.FromBytes(new byte[4], DType.Float32, 1));
        var key = PythonValue.FromString("k");
        var list = PythonValue.FromSequence([PythonValue.FromInt64(3), tensor], "list");
        var dict = PythonValue.FromMapping([new(key, list)]);
        Assert.That(dict["k"][0].AsInt64(), Is.EqualTo(3));
        Assert.That(dict["k"][0].AsDouble(), Is.EqualTo(3), "ints widen to double");
        Assert.That(dict.ToString(), Is.EqualTo("dict of 1"));
        dict.Dispose();
        Assert.That(tensor.IsDisposed && key.IsDisposed && list.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => tensor.AsReadOnlySpan<float>());
    }

    [Test]
    public void TensorArgument_decides_which_values_are_tensors()
    {
        Assert.That(TensorArgument.TryCreate(new float[2, 3], out var matrix) && matrix!.Shape.SequenceEqual([2L, 3L]));
        Assert.That(TensorArgument.TryCreate(System.Numerics.Tensors.Tensor.Create(new double[] { 1, 2 }, [2]), out var t) && t!.DType == DType.Float64);
        Assert.That(TensorArgument.TryCreate(new object[] { 1 }, out _), Is.False, "object[] is a list");
        Assert.That(TensorArgument.TryCreate(new string[] { "a" }, out _), Is.False);
        Assert.That(TensorArgument.TryCreate(3.0, out _), Is.False);
        Assert.Throws<ArgumentException>(() => TensorArgument.Create<float>(new float[5], 2, 2));
        var backing = new short[] { 1, 2, 3, 4 };
        var slice = TensorArgument.Create<short>(backing.AsMemory(2));
        backing[3] = 40;
        Assert.That(MemoryMarshal.Cast<byte, short>(slice.Bytes).ToArray(), Is.EqualTo(new short[] { 3, 40 }), "no copy until a session copies");
    }
}
