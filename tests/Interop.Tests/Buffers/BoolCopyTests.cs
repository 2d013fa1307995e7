using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Embedding;
using Interop.NumPy;
using Interop.Sessions;
using Interop.Tests.Isolated;

namespace Interop.Tests.Buffers;

/// <summary>
/// NumPy's bool is a byte that reinterpreting views may set to anything (arr.view(np.bool_)); NumPy reads any nonzero byte
/// as True. Every copy into .NET must give canonical bools (a .NET bool holding 2 is not equal to true); zero-copy views
/// show the bytes as they are (documented in docs/buffers.md).
/// </summary>
[TestFixture]
[Category("numpy")]
public class BoolCopyTests
{
    // Raw bytes 0, 1, 2, 255 reinterpreted as bool, in a C-contiguous and in a reversed, strided layout.
    private static readonly string[] s_rawBools =
    [
        "np.array([0, 1, 2, 255], np.uint8).view(np.bool_)",
        "np.array([[7, 0, 0], [255, 9, 0]], np.uint8).view(np.bool_).T[::-1]",
    ];

    private static bool[] NumPyTruth(string expression) => PythonRuntime.Run(() =>
    {
        using var np = Python.Runtime.Py.Import("numpy");
        using var scope = Python.Runtime.Py.CreateScope();
        scope.Set("np", np);
        using var list = scope.Eval($"[bool(x) for x in ({expression}).flatten(order='C').view(np.uint8)]");
        return list.As<bool[]>();
    });

    private static void AssertCanonical(IEnumerable<bool> values, bool[] expected, string path)
    {
        var array = values.ToArray();
        var bytes = MemoryMarshal.AsBytes(array.AsSpan()).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(bytes, Has.All.LessThanOrEqualTo((byte)1), $"{path}: every bool byte is 0 or 1");
            Assert.That(array, Is.EqualTo(expected), $"{path}: NumPy's truth (nonzero is True)");
            for (var i = 0; i < array.Length; i++)
                Assert.That(array[i].Equals(expected[i]), Is.True, $"{path}: element {i} Equals({expected[i]})");
        });
    }

    [TestCaseSource(nameof(s_rawBools))]
    public void Every_NDArray_copy_gives_canonical_bools(string expression)
    {
        var expected = NumPyTruth(expression);
        using var array = NDArray.Evaluate(expression);
        AssertCanonical(array.ToArray<bool>(), expected, "ToArray");
        var destination = new bool[expected.Length + 1];
        array.CopyTo<bool>(destination);
        AssertCanonical(destination.Take(expected.Length), expected, "CopyTo");
        var chunk = new bool[2];
        array.CopyTo<bool>(1, chunk);
        AssertCanonical(chunk, expected[1..3], "CopyTo(start)");
        using (var pooled = array.ToPooledArray<bool>())
            AssertCanonical(pooled.Span.ToArray(), expected, "ToPooledArray");
        AssertCanonical(array.ToTensor<bool>().ToArray(), expected, "ToTensor");
        AssertCanonical(array.ToMultidimensionalArray<bool>().Cast<bool>(), expected, "ToMultidimensionalArray");
        using var view = array.ViewReadOnly<bool>();
        AssertCanonical(view.ToArray(), expected, "ArrayView.ToArray");
        AssertCanonical(view.ToTensor().ToArray(), expected, "ArrayView.ToTensor");
    }

    [Test]
    public void A_zero_copy_bool_view_shows_the_bytes_as_they_are()
    {
        using var array = NDArray.Evaluate(s_rawBools[0]);
        using var view = array.ViewReadOnly<bool>();
        Assert.That(MemoryMarshal.AsBytes(view.AsReadOnlySpan()).ToArray(), Is.EqualTo(new byte[] { 0, 1, 2, 255 }),
            "views do not rewrite memory (docs/buffers.md); copies are canonical");
    }

    [Test]
    public void Non_canonical_dotnet_bools_reach_numpy_as_0_or_1()
    {
        var raw = MemoryMarshal.Cast<byte, bool>(new byte[] { 0, 2, 255, 1 }.AsSpan()).ToArray();
        using var copied = NDArray.CopyFrom<bool>(raw);
        using var assigned = NDArray.Empty(DType.Bool, 2, 2);
        assigned.Assign<bool>(raw);
        using var strided = NDArray.Evaluate("np.zeros(8, np.bool_)[::2]");
        strided.Assign<bool>(raw);
        foreach (var (name, a) in new[] { ("CopyFrom", copied), ("Assign", assigned), ("Assign strided", strided) })
            Assert.That(BytesOf(a), Is.EqualTo(new byte[] { 0, 1, 1, 1 }), name);
    }

    private static byte[] BytesOf(NDArray a) => PythonRuntime.Run(() =>
    {
        using var f = Python.Runtime.PythonEngine.Eval("lambda a: [int(x) for x in a.flatten().view('uint8')]");
        using var r = f.Invoke(a.PyObject);
        return r.As<byte[]>();
    });

    [Test]
    public void PythonValue_copies_of_bytes_holding_2_and_255_are_canonical()
    {
        using var value = PythonValue.FromTensor(TensorData.FromBytes([0, 1, 2, 255], DType.Bool, 2, 2));
        var expected = new[] { false, true, true, true };
        AssertCanonical(value.ToArray<bool>(), expected, "ToArray");
        AssertCanonical(value.ToTensor<bool>().ToArray(), expected, "ToTensor");
        AssertCanonical(value.ToMultidimensionalArray<bool>().Cast<bool>(), expected, "ToMultidimensionalArray");
        var destination = new bool[4];
        value.CopyTo<bool>(destination);
        AssertCanonical(destination, expected, "CopyTo");
        Assert.That(MemoryMarshal.AsBytes(value.AsReadOnlySpan<bool>()).ToArray(), Is.EqualTo(new byte[] { 0, 1, 2, 255 }), "the zero-copy span is the bytes");
    }

    private const string RawBoolCall = "__import__('numpy').array([0, 1, 2, 255], dtype='uint8').view('bool')";

    [Test]
    public void In_process_session_results_copy_canonical_bools()
    {
        using var session = PythonSession.InProcess();
        CheckSessionResult(session);
    }

    [Test]
    [NonParallelizable]
    public void Isolated_session_results_copy_canonical_bools()
    {
        using var session = IsolatedTestSupport.Session();
        CheckSessionResult(session);
    }

    private static void CheckSessionResult(PythonSession session)
    {
        using var builtins = session.Import("builtins");
        using var eval = builtins.GetAttr("eval");
        using var value = eval.Call(RawBoolCall);
        var expected = new[] { false, true, true, true };
        AssertCanonical(value.ToArray<bool>(), expected, "ToArray");
        AssertCanonical(value.ToTensor<bool>().ToArray(), expected, "ToTensor");
        var destination = new bool[4];
        value.CopyTo<bool>(destination);
        AssertCanonical(destination, expected, "CopyTo");
    }
}
