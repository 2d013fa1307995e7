using System.Diagnostics;
using System.Runtime.InteropServices;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>
/// Direct reads of a worker's memory (WorkerMemory, process_vm_readv) and holding a worker across requests
/// (WorkerProcess.Hold): the pieces of the one-copy model-weight route, without TorchSharp.
/// </summary>
[TestFixture]
[Category("isolated")]
[NonParallelizable]
public class WorkerMemoryTests
{
    private static string FixturePath => Path.Combine(TestPython.RepositoryRoot, "tests", "Interop.Tests", "Isolated", "memory_fixture.py");

    /// <summary>A pinned array's address (released with the handle).</summary>
    private sealed class Pinned(byte[] array) : IDisposable
    {
        private GCHandle _handle = GCHandle.Alloc(array, GCHandleType.Pinned);

        public nint Address => _handle.AddrOfPinnedObject();

        public void Dispose() => _handle.Free();
    }

    private static long AddressOf(PythonRef block)
    {
        using var attr = block.GetAttr("address");
        using var builtins = block.Session.Import("builtins");
        using var value = builtins.GetAttr("int").Call(attr);
        return value.AsInt64();
    }

    private static byte Expected(long i) => (byte)((i * 7 + 3) % 256);

    [TestCase(1)]
    [TestCase(4096 + 17)]
    [TestCase((20 << 20) + 5)] // several pieces, several threads
    public void A_direct_read_copies_the_workers_bytes_exactly(int bytes)
    {
        using var session = Session();
        using var fixture = session.LoadFile(FixturePath);
        using var value = fixture.GetAttr("block").Call(bytes);
        using var block = value.AsRef();
        var worker = ((IsolatedRef)block).Target.Worker!;
        var address = AddressOf(block);
        var destination = new byte[bytes];
        using var hold = worker.Hold();
        using (var to = new Pinned(destination))
        {
            // two segments: the first 1 byte, then the rest
            var segments = new List<WorkerMemory.Segment> { new(address, 1, to.Address, "first") };
            if (bytes > 1)
                segments.Add(new(address + 1, bytes - 1, to.Address + 1, "rest"));
            Assert.That(WorkerMemory.TryRead(worker, segments), Is.True, "a child worker is readable (Yama ptrace_scope 0 or 1)");
        }
        for (var i = 0; i < bytes; i++)
        {
            if (destination[i] != Expected(i))
                Assert.Fail($"byte {i}: {destination[i]}, expected {Expected(i)}");
        }
    }

    [Test]
    public void Ranges_the_worker_does_not_have_are_typed_errors_and_nothing_is_read_from_an_impossible_one()
    {
        using var session = Session();
        using var fixture = session.LoadFile(FixturePath);
        using var value = fixture.GetAttr("block").Call(4096);
        using var block = value.AsRef();
        var worker = ((IsolatedRef)block).Target.Worker!;
        var destination = new byte[8192];
        using var hold = worker.Hold();
        using (var to = new Pinned(destination))
        {
            var unmapped = Assert.Throws<WorkerMemoryException>(() => WorkerMemory.TryRead(worker, [new(4096, 100, to.Address, "'w'")]))!;
            Assert.That(unmapped.ErrorNumber, Is.EqualTo(14), "EFAULT");
            Assert.That(unmapped.Message, Does.Contain("'w'").And.Contain("EFAULT"));
            Assert.That(unmapped.ProcessId, Is.EqualTo(worker.ProcessId));
            Assert.Throws<WorkerProtocolException>(() => WorkerMemory.TryRead(worker, [new(-4096, 100, to.Address, "'w'")]));
            Assert.Throws<WorkerProtocolException>(() => WorkerMemory.TryRead(worker, [new(long.MaxValue - 10, 100, to.Address, "'w'")]));
        }
        Assert.That(worker.IsAlive, Is.True, "a bad range harms nothing in the worker");
    }

    [Test]
    public void Reading_a_worker_that_died_is_WorkerCrashedException()
    {
        using var session = Session();
        using var fixture = session.LoadFile(FixturePath);
        using var value = fixture.GetAttr("block").Call(1 << 20);
        using var block = value.AsRef();
        var worker = ((IsolatedRef)block).Target.Worker!;
        var address = AddressOf(block);
        var destination = new byte[1 << 20];
        using var hold = worker.Hold();
        using (var process = Process.GetProcessById(worker.ProcessId))
        {
            process.Kill();
            process.WaitForExit(10_000);
        }
        using (var to = new Pinned(destination))
            Assert.Throws<WorkerCrashedException>(() => WorkerMemory.TryRead(worker, [new(address, 1 << 20, to.Address, "'w'")]));
        Assert.That(worker.IsAlive, Is.False);
    }

    [Test]
    public void A_held_worker_serves_its_holder_and_other_callers_wait_for_the_release()
    {
        using var session = Session();
        using var fixture = session.LoadFile(FixturePath);
        using var value = fixture.GetAttr("block").Call(16);
        using var block = value.AsRef();
        var worker = ((IsolatedRef)block).Target.Worker!;
        Task<long> other;
        using (worker.Hold())
        {
            using (block.GetAttr("set").Call(0, 200)) { } // the holder's own calls go through
            other = Task.Run(() =>
            {
                using var data = block.GetAttr("data");
                using var b = session.Import("builtins");
                using var first = b.GetAttr("int").Call(data.GetAttr("__getitem__").Call(0));
                return first.AsInt64();
            });
            Assert.That(other.Wait(TimeSpan.FromMilliseconds(500)), Is.False, "another caller waits while the worker is held");
            using (block.GetAttr("set").Call(0, 201)) { }
        }
        Assert.That(other.Wait(TimeSpan.FromSeconds(30)), Is.True, "released: the other caller goes through");
        Assert.That(other.Result, Is.EqualTo(201), "it saw the state the holder left");
        Assert.That(worker.Load, Is.Zero);
    }
}
