using Interop.Embedding;
using Interop.Native;
using Interop.NumPy;

namespace Interop.Tests.Buffers;

/// <summary>
/// The in-place read of an ndarray's WRITEABLE flag (Native/NumPyArrayFields.cs) answers what <c>arr.flags.writeable</c>
/// answers, for plain arrays, views, subclasses and arrays made read-only in every way NumPy has; objects that are not
/// ndarrays are left to the attribute path.
/// </summary>
[TestFixture]
[Category("numpy")]
public class NumPyArrayFieldsTests
{
    private static readonly string[] s_arrays =
    [
        "np.zeros(3, np.float32)",
        "np.zeros((4, 5))[::2, 1:]",
        "np.frombuffer(bytes([0, 1]), np.uint8)",
        "np.frombuffer(bytearray(8), np.uint8)",
        "(lambda a: (a.setflags(write=False), a)[1])(np.zeros(3, np.float32))",
        "(lambda a: (a.setflags(write=False), a[1:])[1])(np.zeros(3, np.float32))",
        "np.broadcast_to(np.arange(3.0), (2, 3))",
        "np.arange(6).reshape(2, 3).T",
        "np.zeros(3).view(np.recarray)",
        "np.ma.masked_array(np.zeros(3))",
        "np.zeros((), np.int8)",
    ];

    [TestCaseSource(nameof(s_arrays))]
    public void The_flag_read_in_place_matches_arr_flags_writeable(string expression)
    {
        using var array = NDArray.Evaluate(expression);
        using var gil = PythonRuntime.AcquireGil();
        using var flags = array.PyObject.GetAttr("flags");
        var expected = flags.GetAttr("writeable").IsTrue();
        Assert.Multiple(() =>
        {
            Assert.That(NumPyArrayFields.TryIsWriteable(array.ObjectAddress, out var writeable), Is.True, "an ndarray on a layout the probe confirmed");
            Assert.That(writeable, Is.EqualTo(expected), expression);
        });
    }

    [Test]
    public void Objects_that_are_not_ndarrays_are_left_to_the_attribute_path()
    {
        using var gil = PythonRuntime.AcquireGil();
        using var list = Python.Runtime.PythonEngine.Eval("[1, 2, 3]");
        using var memory = Python.Runtime.PythonEngine.Eval("memoryview(bytearray(4))");
        Assert.Multiple(() =>
        {
            Assert.That(NumPyArrayFields.TryIsWriteable(CPython.Address(list), out _), Is.False);
            Assert.That(NumPyArrayFields.TryIsWriteable(CPython.Address(memory), out _), Is.False);
        });
    }
}
