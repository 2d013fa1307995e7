using Interop.DTypes;
using Interop.Errors;
using Interop.NumPy;
using Interop.Sessions;

namespace Interop.Tests.Buffers;

/// <summary>
/// Arrays of more than 2^31 elements. np.zeros gets its memory from calloc, so the 2 GiB array below costs only the pages
/// the test touches (a few), and it is disposed at the end of each test: one such array at a time.
/// Spans, Memory and .NET arrays cannot hold it: typed exceptions with the count, the limit and the way out;
/// tensor spans (native-int lengths) and chunked copies work.
/// </summary>
[TestFixture]
[Category("numpy")]
[NonParallelizable]
public class LargeArrayTests
{
    private const long Count = (1L << 31) + 16;
    private const long Marked = (1L << 31) + 5;
    private static readonly nint s_marked = nint.CreateChecked(Marked);
    private const string Expression = "(lambda a: (a.__setitem__(2**31 + 5, 7), a.__setitem__(3, -2), a)[-1])(np.zeros(2**31 + 16, np.int8))";

    private static void AssertTooMany(TestDelegate action, long limit, string what)
    {
        var e = Assert.Throws<TooManyElementsException>(action, what)!;
        Assert.Multiple(() =>
        {
            Assert.That(e.ElementCount, Is.EqualTo(Count), what);
            Assert.That(e.Limit, Is.EqualTo(limit), what);
            Assert.That(e.Message, Does.Contain(Count.ToString(System.Globalization.CultureInfo.InvariantCulture))
                                       .And.Contain(limit.ToString(System.Globalization.CultureInfo.InvariantCulture))
                                       .And.Contain("AsReadOnlyTensorSpan").And.Contain("CopyTo(start, destination)"), what);
        });
    }

    [Test]
    public void NDArray_views_and_copies_of_more_than_2_pow_31_elements()
    {
        using var array = NDArray.Evaluate(Expression);
        using var view = array.ViewReadOnly<sbyte>();
        Assert.That((long)view.Length, Is.EqualTo(Count));
        AssertTooMany(() => view.AsReadOnlySpan(), int.MaxValue, "AsReadOnlySpan");
        AssertTooMany(() => view.AsReadOnlyMemory(), int.MaxValue, "AsReadOnlyMemory");
        AssertTooMany(() => view.CopyTo(new sbyte[16]), int.MaxValue, "CopyTo(span)");
        AssertTooMany(() => view.ToArray(), Array.MaxLength, "ArrayView.ToArray");
        AssertTooMany(() => view.ToTensor(), Array.MaxLength, "ArrayView.ToTensor");
        AssertTooMany(() => array.ToArray<sbyte>(), Array.MaxLength, "ToArray");
        AssertTooMany(() => array.ToPooledArray<sbyte>(), Array.MaxLength, "ToPooledArray");
        AssertTooMany(() => array.ToTensor<sbyte>(), Array.MaxLength, "ToTensor");
        AssertTooMany(() => array.ToMultidimensionalArray<sbyte>(), Array.MaxLength, "ToMultidimensionalArray");

        var tensor = view.AsReadOnlyTensorSpan();
        var (length, marked, three) = (tensor.FlattenedLength, tensor[[s_marked]], tensor[[(nint)3]]);
        Assert.Multiple(() =>
        {
            Assert.That((long)length, Is.EqualTo(Count), "a tensor span takes native-int lengths");
            Assert.That(marked, Is.EqualTo(7));
            Assert.That(three, Is.EqualTo(-2));
        });
        var chunk = new sbyte[16];
        array.CopyTo<sbyte>(Marked - 5, chunk);
        Assert.That(chunk[5], Is.EqualTo(7), "CopyTo(start, destination) reaches past 2^31");
        var tail = new sbyte[10];
        view.CopyTo(Count - 10, tail);
        Assert.That(tail, Has.All.EqualTo(0), "the last elements (after the mark)");
        Assert.Throws<ArgumentOutOfRangeException>(() => view.CopyTo(Count - 15, chunk), "a range past the end");
    }

    [Test]
    public void A_strided_copy_can_start_anywhere()
    {
        using var array = NDArray.Evaluate("np.arange(60, dtype=np.int32).reshape(3, 4, 5).transpose(2, 0, 1)[:, ::-1]");
        var all = array.ToArray<int>();
        for (var start = 0; start < all.Length; start += 7)
        {
            var chunk = new int[Math.Min(11, all.Length - start)];
            array.CopyTo<int>(start, chunk);
            Assert.That(chunk, Is.EqualTo(all.Skip(start).Take(chunk.Length)), $"from {start}");
        }
    }

    [Test]
    public void PythonValue_accessors_of_an_in_process_result_of_more_than_2_pow_31_elements()
    {
        using var session = PythonSession.InProcess();
        using var builtins = session.Import("builtins");
        using var eval = builtins.GetAttr("eval");
        using var value = eval.Call(Expression.Replace("np.", "__import__('numpy').", StringComparison.Ordinal));
        CheckValue(value, expectMarks: true);
    }

    [Test]
    public void PythonValue_accessors_of_tensor_data_of_more_than_2_pow_31_elements()
    {
        // A broadcast over one byte: 2^31 + 16 elements, no memory.
        using var value = PythonValue.FromTensor(new BroadcastByte());
        CheckValue(value, expectMarks: false);
    }

    private static void CheckValue(PythonValue value, bool expectMarks)
    {
        Assert.That(value.ElementCount, Is.EqualTo(Count));
        if (expectMarks)
            AssertTooMany(() => value.AsReadOnlySpan<sbyte>(), int.MaxValue, "AsReadOnlySpan");
        else
            Assert.Throws<LayoutException>(() => value.AsReadOnlySpan<sbyte>(), "a broadcast is not C-contiguous");
        AssertTooMany(() => value.CopyTo<sbyte>(new sbyte[16]), int.MaxValue, "CopyTo(span)");
        AssertTooMany(() => value.ToArray<sbyte>(), Array.MaxLength, "ToArray");
        AssertTooMany(() => value.ToTensor<sbyte>(), Array.MaxLength, "ToTensor");
        AssertTooMany(() => value.ToMultidimensionalArray<sbyte>(), Array.MaxLength, "ToMultidimensionalArray");
        var tensor = value.AsReadOnlyTensorSpan<sbyte>();
        var (length, marked) = (tensor.FlattenedLength, tensor[[s_marked]]);
        var chunk = new sbyte[16];
        value.CopyTo<sbyte>(Marked - 5, chunk);
        Assert.Multiple(() =>
        {
            Assert.That((long)length, Is.EqualTo(Count));
            Assert.That(marked, Is.EqualTo(expectMarks ? 7 : 1));
            Assert.That(chunk[5], Is.EqualTo(expectMarks ? 7 : 1));
        });
    }

    private sealed class BroadcastByte() : TensorData(DType.Int8, [Count], [0])
    {
        private static readonly sbyte[] s_one = GC.AllocateArray<sbyte>(1, pinned: true);

        static BroadcastByte() => s_one[0] = 1;

        protected override nint GetAddress() => System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(s_one, 0);
    }

    [Test]
    public void A_zero_size_array_with_a_dimension_beyond_a_dotnet_array_is_refused_with_the_limit()
    {
        using var array = NDArray.Evaluate("np.empty((0, 2**31 + 16), np.int8)");
        Assert.That(array.ToArray<sbyte>(), Is.Empty);
        var e = Assert.Throws<TooManyElementsException>(() => array.ToMultidimensionalArray<sbyte>())!;
        Assert.That(e.Limit, Is.EqualTo(Array.MaxLength));
    }

    [TestCase("np.zeros((3, 0), np.float32)")]
    [TestCase("np.zeros((0, 3), np.float32)")]
    public void An_empty_array_gives_a_writable_tensor_span_whatever_its_exported_strides(string expression)
    {
        using var array = NDArray.Evaluate(expression);
        using var view = array.View<float>();
        var length = view.AsTensorSpan().FlattenedLength;
        Assert.That((long)length, Is.Zero);
    }

    [Test]
    public void A_writable_tensor_span_refuses_only_real_broadcasts()
    {
        using var column = NDArray.Evaluate("np.zeros((3, 1), np.float32)");
        using (var view = column.View<float>())
            Assert.That((long)view.AsTensorSpan().FlattenedLength, Is.EqualTo(3));
        using var broadcast = NDArray.Evaluate("np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (3,), (0,))");
        using var view2 = broadcast.View<float>();
        Assert.Throws<LayoutException>(() => view2.AsTensorSpan());
    }

    [Test]
    public void TensorData_refuses_shapes_whose_byte_size_overflows_and_negative_dimensions()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TensorData.FromBytes([], DType.Complex128, 1L << 60), "2^60 x 16 bytes wraps to 0 in 64 bits");
        Assert.Throws<ArgumentOutOfRangeException>(() => TensorData.FromBytes([1], DType.Int8, -1, -1));
    }
}
