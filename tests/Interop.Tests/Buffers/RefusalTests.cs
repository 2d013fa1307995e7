using Interop.Diagnostics;
using Interop.Errors;

namespace Interop.Tests.Buffers;

/// <summary>Arrays the buffer layer must refuse, each with its typed exception, and no buffer left behind.</summary>
[TestFixture]
[Category("numpy")]
public class RefusalTests
{
    [TestCase("np.array([1, 'a', None], dtype=object)", "object")]
    [TestCase("np.zeros(3, dtype=[('a', '<i4'), ('b', '<f8')])", "structured")]
    [TestCase("np.array(['2024-01-01', '2025-06-30'], dtype='datetime64[ns]')", "datetime64")]
    [TestCase("np.array([1, 2], dtype='timedelta64[s]')", "timedelta64")]
    [TestCase("np.array(['ab', 'cde'])", "'U'")]
    [TestCase("np.array(['x'])", "'U'")]
    [TestCase("np.array([b'ab', b'cde'])", "'S'")]
    [TestCase("np.zeros(3, dtype=np.longdouble)", "long double")]
    [TestCase("np.zeros(3, dtype=np.clongdouble)", "complex long double")]
    public void Unsupported_dtypes_are_refused_with_the_dtype_named(string expression, string named)
    {
        var before = LiveObjects.PythonBuffers;
        using var array = NumPyOracle.Array(expression);
        Assert.Multiple(() =>
        {
            var view = Assert.Throws<UnsupportedDTypeException>(() => array.ViewReadOnly<double>().Dispose());
            Assert.That(view!.Message, Does.Contain(named));
            var writable = Assert.Throws<UnsupportedDTypeException>(() => array.View<double>().Dispose());
            Assert.That(writable!.Message, Does.Contain(named));
            var copy = Assert.Throws<UnsupportedDTypeException>(() => array.ToArray<double>());
            Assert.That(copy!.Message, Does.Contain(named));
            var dtype = Assert.Throws<UnsupportedDTypeException>(() => _ = array.DType);
            Assert.That(dtype!.Message, Does.Contain(named));
        });
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before), "a refused buffer must be released");
    }

    [TestCase("read_only(np.arange(6.0))")]
    [TestCase("np.frombuffer(bytes(48), dtype=np.float64)")]
    [TestCase("np.broadcast_to(np.arange(3.0), (4, 3))")]
    [TestCase("read_only(np.arange(12.0).reshape(3, 4)[:, 1:])")]
    public void A_writable_view_of_a_read_only_array_is_refused(string expression)
    {
        var before = LiveObjects.PythonBuffers;
        using var array = NumPyOracle.Array(expression);
        Assert.That(array.IsWriteable, Is.False);
        Assert.Throws<ReadOnlyBufferException>(() => array.View<double>().Dispose());
        using (var view = array.ViewReadOnly<double>())
        {
            Assert.That(view.IsWritable, Is.False);
            Assert.Throws<ReadOnlyBufferException>(() => view.AsSpan());
            Assert.Throws<ReadOnlyBufferException>(() => view.AsMemory());
            Assert.Throws<ReadOnlyBufferException>(() => view.AsTensorSpan());
        }
        Assert.That(array.ToArray<double>(), Is.EqualTo(NumPyOracle.Eval<double[]>($"[float(v) for v in ({expression}).ravel()]")));
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
    }

    [Test]
    public void A_read_only_view_of_a_writable_array_refuses_writes_too()
    {
        using var array = NumPyOracle.Array("np.arange(6.0)");
        using var view = array.ViewReadOnly<double>();
        Assert.Throws<ReadOnlyBufferException>(() => view.AsSpan());
        Assert.Throws<ReadOnlyBufferException>(() => view.AsTensorSpan());
    }

    [TestCase("np.arange(6, dtype=np.int32)")]
    [TestCase("np.arange(6, dtype=np.int32).reshape(2, 3).T")]
    [TestCase("np.arange(6, dtype=np.int32).astype('>i4')")]
    public void Viewing_int32_as_another_element_type_is_refused(string expression)
    {
        var before = LiveObjects.PythonBuffers;
        using var array = NumPyOracle.Array(expression);
        Assert.Multiple(() =>
        {
            var ex = Assert.Throws<ElementTypeMismatchException>(() => array.ViewReadOnly<float>().Dispose());
            Assert.That(ex!.Requested, Is.EqualTo(typeof(float)));
            Assert.That(ex.Expected, Is.EqualTo(typeof(int)));
            Assert.That(ex.Message, Does.Contain("int32").And.Contain("Single"));
            Assert.Throws<ElementTypeMismatchException>(() => array.View<uint>().Dispose());
            Assert.Throws<ElementTypeMismatchException>(() => array.ToArray<float>());
            Assert.Throws<ElementTypeMismatchException>(() => array.ToArray<long>());
            Assert.That(array.ToArray<int>(), Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }).Or.EqualTo(new[] { 0, 3, 1, 4, 2, 5 }));
        });
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
    }

    [Test]
    public void A_writable_tensor_span_of_a_writable_broadcast_is_refused()
    {
        // as_strided makes a writable array whose elements alias one another: writes through it would be ambiguous.
        using var array = NumPyOracle.Array("np.lib.stride_tricks.as_strided(np.arange(4.0), shape=(3, 4), strides=(0, 8))");
        Assert.That(array.IsWriteable);
        using var view = array.View<double>();
        Assert.Throws<LayoutException>(() => view.AsTensorSpan());
        Assert.Throws<LayoutException>(() => view.AsSpan());
        var tensor = view.AsReadOnlyTensorSpan();
        Assert.That(tensor[[2, 3]], Is.EqualTo(3.0));
    }
}
