using Interop.Embedding;
using Interop.Sessions;
using Interop.Torch;

namespace Interop.Tests.Torch;

/// <summary>
/// An object disposed while another thread's call on it waits for the GIL: the call must see the disposal
/// (ObjectDisposedException), never hand a released (null) object pointer to CPython. Each test holds the GIL
/// on the test thread, starts the call on another thread (it passes its disposed check and waits for the GIL),
/// disposes the object with the GIL still held, then lets the call run.
/// </summary>
[TestFixture]
[Category("numpy")]
[Category("torch")]
public class DisposeRaceTests
{
    private static Exception? RaceWithDispose(Action use, IDisposable target)
    {
        Task? call = null;
        PythonRuntime.Run(() =>
        {
            call = Task.Run(use);
            Thread.Sleep(300); // the call has passed its checks and waits for the GIL this thread holds
            target.Dispose();   // the GIL is re-entrant: disposal completes before the call can run
            return 0;
        });
        try
        {
            call!.GetAwaiter().GetResult();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    [Test]
    public void Calling_a_PythonRef_disposed_while_the_call_waits_for_the_GIL_throws_ObjectDisposedException()
    {
        using var session = PythonSession.InProcess();
        using var math = session.Import("math");
        var sqrt = math.GetAttr("sqrt");
        var e = RaceWithDispose(() => sqrt.Call(4.0).Dispose(), sqrt);
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void GetAttr_on_a_PythonRef_disposed_while_waiting_for_the_GIL_throws_ObjectDisposedException()
    {
        using var session = PythonSession.InProcess();
        var math = session.Import("math");
        var e = RaceWithDispose(() => math.GetAttr("pi").Dispose(), math);
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void Calling_while_the_session_is_disposed_throws_ObjectDisposedException()
    {
        var session = PythonSession.InProcess();
        var math = session.Import("math");
        using var sqrt = math.GetAttr("sqrt");
        var e = RaceWithDispose(() => sqrt.Call(4.0).Dispose(), session);
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void Reading_a_TorchTensor_disposed_while_waiting_for_the_GIL_throws_ObjectDisposedException()
    {
        var tensor = TorchTensor.Evaluate("torch.ones(3)");
        var e = RaceWithDispose(() => _ = tensor.DTypeName, tensor);
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void Exporting_a_TorchTensor_disposed_while_waiting_for_the_GIL_throws_ObjectDisposedException()
    {
        var tensor = TorchTensor.Evaluate("torch.ones(3)");
        var e = RaceWithDispose(() => tensor.Numpy().Dispose(), tensor);
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void Reading_an_NDArray_disposed_while_waiting_for_the_GIL_throws_ObjectDisposedException()
    {
        var array = Interop.NumPy.NDArray.Evaluate("np.ones(3)");
        Assert.That(RaceWithDispose(() => _ = array.DTypeName, array), Is.InstanceOf<ObjectDisposedException>());
        var other = Interop.NumPy.NDArray.Evaluate("np.ones(3)");
        Assert.That(RaceWithDispose(() => other.ToArray<double>(), other), Is.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void Passing_disposed_objects_as_call_arguments_throws_ObjectDisposedException()
    {
        using var session = PythonSession.InProcess();
        using var builtins = session.Import("builtins");
        using var repr = builtins.GetAttr("repr");
        var raw = PythonRuntime.Run(() => new Python.Runtime.PyString("x"));
        PythonRuntime.Run(() =>
        {
            raw.Dispose();
            return 0;
        });
        var array = Interop.NumPy.NDArray.Evaluate("np.ones(3)");
        array.Dispose();
        var tensor = TorchTensor.Evaluate("torch.ones(3)");
        tensor.Dispose();
        var reference = builtins.GetAttr("len");
        reference.Dispose();
        foreach (var argument in new object[] { raw, array, tensor, reference })
        {
            Assert.Throws<ObjectDisposedException>(() => repr.Call(argument).Dispose(), argument.GetType().Name);
            Assert.Throws<ObjectDisposedException>(() => repr.Call(new object?[] { new object?[] { argument } }).Dispose(), "nested: " + argument.GetType().Name);
        }
    }

    [Test]
    public void A_disposed_PyObject_never_reaches_CPython()
    {
        var exporter = PythonRuntime.Run(() => Python.Runtime.PyModule.FromString("m", "import numpy as np\na = np.ones(3)").GetAttr("a"));
        PythonRuntime.Run(() =>
        {
            exporter.Dispose();
            Assert.Throws<ObjectDisposedException>(() => Interop.Buffers.PythonBuffer.Acquire(exporter, writable: false).Dispose());
            Assert.Throws<ObjectDisposedException>(() => Interop.NumPy.NDArray.Wrap(exporter).Dispose());
            return 0;
        });
    }
}
