using Interop.Diagnostics;
using Interop.Errors;
using Interop.NumPy;
using Interop.Torch;
using static Interop.Tests.Torch.TorchTestPython;

namespace Interop.Tests.Torch;

/// <summary>
/// One policy for read-only memory on every sharing path: it is never shared writable (View&lt;T&gt;, AsTorchSharp and
/// TorchTensor.FromNumPy refuse with ReadOnlyBufferException naming the copy to use). PyTorch's own from_numpy would share
/// it as a writable tensor with a once-per-process warning; and Python warnings raised in library calls reach .NET.
/// </summary>
[TestFixture]
[Category("numpy")]
[Category("torch")]
[NonParallelizable]
public class ReadOnlySharingTests
{
    private static readonly string[] s_readOnly =
    [
        "np.frombuffer(bytes([0]), np.uint8)",
        "(lambda a: (a.setflags(write=False), a)[1])(np.zeros(3, np.float32))",
        "np.broadcast_to(np.arange(3.0), (2, 3))",
    ];

    [TestCaseSource(nameof(s_readOnly))]
    public void FromNumPy_refuses_read_only_arrays_and_names_the_copy(string expression)
    {
        using var array = NDArray.Evaluate(expression);
        Assert.That(array.IsWriteable, Is.False);
        var e = Assert.Throws<ReadOnlyBufferException>(() => TorchTensor.FromNumPy(array))!;
        Assert.That(e.Message, Does.Contain("CopyFromNumPy").And.Contain("read-only"));
        Assert.Throws<ReadOnlyBufferException>(() => array.View<byte>(), "the same rule as writable views");
    }

    [Test]
    public void The_immutable_bytes_stay_unchanged_and_the_opt_in_copy_works()
    {
        using var array = NDArray.Evaluate("np.frombuffer(bytes([0]), np.uint8)");
        Assert.Throws<ReadOnlyBufferException>(() => TorchTensor.FromNumPy(array));
        using var copy = TorchTensor.CopyFromNumPy(array);
        Exec("t.fill_(7)", ("t", copy.PyObject));
        Assert.Multiple(() =>
        {
            Assert.That(Eval<int>("int(a.base[0])", ("a", array.PyObject)), Is.EqualTo(0), "the bytes object still holds 0");
            Assert.That(Eval<int>("int(t[0])", ("t", copy.PyObject)), Is.EqualTo(7));
            Assert.That(copy.DataPointer, Is.Not.EqualTo(array.Address));
        });
    }

    [Test]
    public void A_writable_array_is_still_shared()
    {
        using var array = NDArray.Evaluate("np.zeros(4, np.uint8)");
        using var tensor = TorchTensor.FromNumPy(array);
        Exec("t.fill_(7)", ("t", tensor.PyObject));
        Assert.That(array.ToArray<byte>(), Is.EqualTo(new byte[] { 7, 7, 7, 7 }));
    }

    private static List<PythonWarningEventArgs> Collect(string marker, Action action)
    {
        var seen = new List<PythonWarningEventArgs>();
        void Handler(object? sender, PythonWarningEventArgs e)
        {
            if (e.Message.Contains(marker, StringComparison.Ordinal))
                seen.Add(e);
        }
        PythonWarnings.Raised += Handler;
        try
        {
            action();
        }
        finally
        {
            PythonWarnings.Raised -= Handler;
        }
        return seen;
    }

    [Test]
    public void Python_warnings_inside_library_calls_reach_the_dotnet_handler_every_time()
    {
        for (var i = 0; i < 2; i++)
        {
            var numpy = Collect("divide by zero", () => NDArray.Evaluate("np.array([1.0]) / np.array([0.0])").Dispose());
            var torch = Collect("interop-test-warning", () => TorchTensor.Evaluate("__import__('warnings').warn('interop-test-warning') or torch.ones(1)").Dispose());
            Assert.Multiple(() =>
            {
                Assert.That(numpy, Has.Count.EqualTo(1), $"round {i}: NumPy's RuntimeWarning");
                Assert.That(numpy[0].Category, Is.EqualTo("RuntimeWarning"));
                Assert.That(numpy[0].Operation, Is.EqualTo("NDArray.Evaluate"));
                Assert.That(torch, Has.Count.EqualTo(1), $"round {i}: a UserWarning");
                Assert.That(torch[0].Category, Is.EqualTo("UserWarning"));
                Assert.That(torch[0].Operation, Is.EqualTo("TorchTensor.Evaluate"));
            });
        }
    }

    [Test]
    public void Warnings_of_an_in_process_session_call_reach_the_dotnet_handler()
    {
        using var session = Interop.Sessions.PythonSession.InProcess();
        using var warnings = session.Import("warnings");
        using var warn = warnings.GetAttr("warn");
        var marker = "interop-session-warning-" + Guid.NewGuid().ToString("N"); // a new message: Python's once-per-location registry shows it
        var seen = Collect(marker, () => warn.Call(marker).Dispose());
        Assert.That(seen, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(seen[0].Operation, Is.EqualTo("PythonRef.Call"));
            Assert.That(seen[0].Category, Is.EqualTo("UserWarning"));
        });
    }

    [Test]
    public void Warnings_outside_library_calls_are_left_to_Python()
    {
        _ = NDArray.Evaluate("np.zeros(1)"); // installs the bridge
        var seen = Collect("interop-outside", () => Exec("import warnings\nwith warnings.catch_warnings():\n    warnings.simplefilter('always')\n    warnings.warn('interop-outside')"));
        Assert.That(seen, Is.Empty, "no library call was running on this thread");
    }

    [Test]
    public void A_throwing_handler_does_not_break_the_call()
    {
        static void Throwing(object? sender, PythonWarningEventArgs e) => throw new InvalidOperationException("handler failed");
        PythonWarnings.Raised += Throwing;
        try
        {
            using var a = NDArray.Evaluate("np.array([1.0]) / np.array([0.0])");
            Assert.That(a.ToArray<double>()[0], Is.EqualTo(double.PositiveInfinity));
        }
        finally
        {
            PythonWarnings.Raised -= Throwing;
        }
    }
}
