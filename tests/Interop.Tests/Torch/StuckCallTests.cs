using Interop.Diagnostics;
using Interop.Sessions;

namespace Interop.Tests.Torch;

/// <summary>
/// An in-process call that keeps the GIL (C code that never releases it) after <c>CallAsync</c> timed out: disposing
/// references, values and the session must return (the releases are queued and happen when the GIL comes free), not
/// wait for the call. The call blocks in <c>read()</c> through <c>ctypes.PyDLL</c>, which keeps the GIL, until the
/// test writes to a pipe, so it ends deterministically.
/// </summary>
[TestFixture]
[Category("numpy")]
public class StuckCallTests
{
    private const string Helpers = """
        import ctypes, os, sys, weakref

        _r, _w = os.pipe()
        _libc = ctypes.PyDLL(None)  # PyDLL: the call keeps the GIL
        sys._interop_stuck_alive = weakref.WeakSet()

        class Thing:
            pass

        def write_end():
            return _w

        def hold_gil():
            buffer = ctypes.create_string_buffer(1)
            _libc.read(_r, buffer, 1)
            return 1

        def thing():
            t = Thing()
            sys._interop_stuck_alive.add(t)
            return t

        def array():
            import numpy
            return numpy.arange(10, dtype=numpy.float32)
        """;

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20); // a hang detector: the disposals take milliseconds

    [Test]
    public void Disposing_while_a_timed_out_call_holds_the_GIL_returns_and_the_releases_happen_when_it_is_free()
    {
        var directory = Directory.CreateTempSubdirectory("interop-stuck-").FullName;
        using var observer = PythonSession.InProcess(); // the same interpreter, to look afterwards
        try
        {
            File.WriteAllText(Path.Combine(directory, "stuck_helpers.py"), Helpers);
            var session = PythonSession.InProcess();
            var helpers = session.LoadFile(Path.Combine(directory, "stuck_helpers.py"));
            var hold = helpers.GetAttr("hold_gil");
            int writeEnd;
            using (var w = helpers.GetAttr("write_end"))
            using (var fd = w.Call())
                writeEnd = (int)fd.AsInt64();
            PythonValue thing, tensor;
            using (var make = helpers.GetAttr("thing"))
                thing = make.Call();
            using (var makeArray = helpers.GetAttr("array"))
                tensor = makeArray.Call();
            var buffers = LiveObjects.PythonBuffers;

            Assert.ThrowsAsync<Interop.Errors.WorkerTimeoutException>(() => hold.CallAsync([], new CallOptions { Timeout = TimeSpan.FromMilliseconds(200) }));

            // The stuck call holds the GIL now. None of these may wait for it.
            var disposals = Task.Run(() =>
            {
                thing.Dispose();
                tensor.Dispose();
                hold.Dispose();
                session.Dispose(); // disposes helpers too
            });
            var returned = disposals.Wait(Bound);
            Unblock(writeEnd);
            disposals.Wait();
            Assert.That(returned, Is.True, "Dispose waited for the GIL that a stuck call holds");

            // Once the GIL is free, the next GIL holder releases what was queued.
            using var sys = observer.Import("sys");
            using var gc = observer.Import("gc");
            using var collect = gc.GetAttr("collect");
            collect.Call().Dispose();
            using var alive = sys.GetAttr("_interop_stuck_alive");
            using var len = observer.Import("builtins").GetAttr("len");
            using var count = len.Call(alive);
            Assert.Multiple(() =>
            {
                Assert.That(count.AsInt64(), Is.Zero, "the disposed object value was released");
                Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(buffers - 1), "the disposed tensor value's buffer was released");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static void Unblock(int writeEnd)
    {
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(writeEnd, ownsHandle: false);
        using var pipe = new FileStream(handle, FileAccess.Write, 1);
        pipe.WriteByte(1);
        pipe.Flush();
    }
}
