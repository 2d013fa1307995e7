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

    [TestCase(3000, 7)] // more small ranges than one system call takes (IOV_MAX): several grouped calls
    [TestCase(40, 300_001)] // many ranges per piece, pieces on several threads
    [TestCase(3, 5_000_001)] // ranges larger than a piece (4 MiB): split across pieces
    public void Many_scattered_ranges_are_read_exactly_into_their_own_places(int count, int length)
    {
        var bytes = (long)count * (length + 3);
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
            // Range i lies at i * (length + 3) in the worker and is read to the mirrored slot here, so that neither side is
            // one run of memory and a range read to the wrong place shows.
            var segments = Enumerable.Range(0, count)
                .Select(i => new WorkerMemory.Segment(address + (long)i * (length + 3), length, to.Address + (nint)((long)(count - 1 - i) * (length + 3)), $"'r{i}'"))
                .ToList();
            Assert.That(WorkerMemory.TryRead(worker, segments), Is.True);
        }
        for (var i = 0; i < count; i++)
        {
            var at = (long)(count - 1 - i) * (length + 3);
            for (var j = 0; j < length; j++)
            {
                if (destination[at + j] != Expected((long)i * (length + 3) + j))
                    Assert.Fail($"range {i}, byte {j}: {destination[at + j]}, expected {Expected((long)i * (length + 3) + j)}");
            }
            Assert.That(destination.AsSpan((int)(at + length), 3).ToArray(), Is.All.Zero, $"nothing written past range {i}");
        }
    }

    // Destinations that overlap (tied weights) are copied in order on one thread, so the later segment's bytes stay;
    // the check looks at this process's ranges for reads and the worker's for writes.
    [TestCase(false, 0x1000, 0x9000, 0x1100, 0x10, false)] // disjoint local ranges
    [TestCase(false, 0x1000, 0x9000, 0x5000, 0x9000, true)] // the same local memory twice, apart in the worker
    [TestCase(true, 0x1000, 0x9000, 0x5000, 0x9000, false)] // writes: the worker's ranges are disjoint, the local ones may meet
    [TestCase(true, 0x9000, 0x1000, 0x9000, 0x1100, true)] // writes: the same worker memory twice
    [TestCase(false, 0x1000, 0x1000, 0x1400, 0x1400, true)] // a later range inside an earlier one
    public void Overlapping_destinations_are_recognised(bool write, long address0, long local0, long address1, long local1, bool overlap)
    {
        var segments = new List<WorkerMemory.Segment>
        {
            new(address0, 0x1000, (nint)local0, "a"),
            new(0x100000, 0x10, (nint)0x100000, "elsewhere"),
            new(address1, 0x10, (nint)local1, "b"),
            new(0x50, 0, (nint)0x1000, "empty"), // no bytes: overlaps nothing
        };
        Assert.That(WorkerMemory.DestinationsOverlap(segments, write), Is.EqualTo(overlap));
    }

    [Test]
    public void A_bad_range_among_good_ones_names_itself_and_the_ranges_before_it_were_read()
    {
        using var session = Session();
        using var fixture = session.LoadFile(FixturePath);
        using var value = fixture.GetAttr("block").Call(1 << 20);
        using var block = value.AsRef();
        var worker = ((IsolatedRef)block).Target.Worker!;
        var address = AddressOf(block);
        var destination = new byte[4 << 10];
        using var hold = worker.Hold();
        using (var to = new Pinned(destination))
        {
            // The first range is the probe (copied alone); the next three go in one system call, which stops at 'bad'.
            List<WorkerMemory.Segment> segments =
            [
                new(address, 1024, to.Address, "'a'"),
                new(address + 1024, 1024, to.Address + 1024, "'b'"),
                new(4096, 1024, to.Address + 2048, "'bad'"),
                new(address + 2048, 1024, to.Address + 3072, "'c'"),
            ];
            var e = Assert.Throws<WorkerMemoryException>(() => WorkerMemory.TryRead(worker, segments))!;
            Assert.That(e.Message, Does.Contain("'bad'").And.Not.Contain("'c'"));
            Assert.That(e.ErrorNumber, Is.EqualTo(14), "EFAULT");
            Assert.That(e.FailedAt, Is.Zero);
        }
        for (var i = 0; i < 2048; i++)
        {
            if (destination[i] != Expected(i))
                Assert.Fail($"byte {i}: {destination[i]}, expected {Expected(i)}");
        }
        Assert.That(destination.AsSpan(2048).ToArray(), Is.All.Zero, "nothing of the bad range or after it");
        Assert.That(worker.IsAlive, Is.True);
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
