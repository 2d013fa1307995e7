using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Isolated;
using Interop.Sessions;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>
/// Tensors over 2 GiB (more than 2^31 elements, or more than 2^31 bytes) through a worker: every size, offset and
/// extent of the protocol and the regions is 64-bit. Bounded: one 2 GiB region at a time (about 2 GiB of /dev/shm,
/// freed by each test), a few seconds each.
/// </summary>
[TestFixture]
[Category("isolated")]
[NonParallelizable]
public class LargeTensorTests
{
    private const long Count = (1L << 31) + 16; // np.zeros(2**31 + 16, np.int8)

    [TearDown]
    public void NothingLeftBehind()
    {
        Assert.That(ShmLeftovers(Environment.ProcessId), Is.Empty, "no shared-memory names may outlive a test");
    }

    [Test]
    public void A_tensor_result_of_more_than_2_pow_31_int8_elements_is_read_in_place_at_its_far_end()
    {
        // torch.from_numpy(np.zeros(2**31 + 16, np.int8)): the export policy, then one copy into a 4 GiB result region.
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var big = fixture.GetAttr("big_int8").Call(Count, true);
        var data = big.AsTensorData();
        Assert.Multiple(() =>
        {
            Assert.That(big.ElementCount, Is.EqualTo(Count));
            Assert.That(big.Shape, Is.EqualTo(new[] { Count }));
            Assert.That(big.DType, Is.EqualTo(DType.Int8));
            Assert.That(data.IsCContiguous, Is.True);
            Assert.That(Marshal.ReadByte(data.Address), Is.EqualTo(7), "element 0");
            // The far end lies beyond 2^31 bytes from the start of the mapping: read in place, no copy.
            var tail = Enumerable.Range(0, 16).Select(i => (sbyte)Marshal.ReadByte(data.Address + (nint)(Count - 16 + i))).ToArray();
            Assert.That(tail, Is.EqualTo(Enumerable.Range(1, 16).Select(i => (sbyte)i).ToArray()), "elements 2^31 .. 2^31 + 15");
            Assert.That(Marshal.ReadByte(data.Address + (nint)(Count - 17)), Is.Zero, "the element before them");
        });
    }

    [Test]
    public void An_argument_of_more_than_2_pow_31_bytes_reaches_the_worker_whole()
    {
        // A .NET array holds at most ~2^31 elements, so the argument is float32: 2^29 + 4 elements, 2 GiB + 16 bytes.
        const int n = (1 << 29) + 4;
        var input = GC.AllocateUninitializedArray<float>(n); // untouched pages: no RAM until written or copied
        input.AsSpan(0, 4).Fill(1.5f);
        for (var i = 0; i < 4; i++)
            input[n - 4 + i] = i + 10;
        var argument = TensorArgument.Create<float>(input);
        Assert.That(argument.ElementCount, Is.EqualTo(n));
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var ends = fixture.GetAttr("ends").Call(argument, 4);
        Assert.Multiple(() =>
        {
            Assert.That(ends[0].AsInt64(), Is.EqualTo(n));
            Assert.That(ends[1].Items.Select(v => v.AsDouble()), Is.EqualTo(new[] { 1.5, 1.5, 1.5, 1.5 }));
            Assert.That(ends[2].Items.Select(v => v.AsDouble()), Is.EqualTo(new[] { 10.0, 11.0, 12.0, 13.0 }), "the last elements, past 2^31 bytes");
        });
        GC.KeepAlive(input);
    }

    [Test]
    public void A_strided_argument_of_more_than_2_pow_31_bytes_is_gathered_whole_in_chunks()
    {
        // Rows of 3 float32 (12 bytes, so the 64 MiB copy chunks end inside rows) repeated by a 0 stride: 2 GiB + 16 bytes
        // of argument over 12 bytes of memory. No span holds it: it used to end in an OverflowException.
        const long rowCount = (1L << 31) / 12 + 2;
        var memory = Marshal.AllocHGlobal(12);
        try
        {
            Marshal.Copy(new[] { 1.5f, 2.5f, 3.5f }, 0, memory, 3);
            var argument = TensorArgument.FromMemory(memory, DType.Float32, [rowCount, 3], [0, 4], keepAlive: null);
            Assert.That(argument.ByteLength, Is.GreaterThan((long)int.MaxValue));
            // The rows at both ends and on each side of every chunk boundary.
            var chunk = ArgumentEncoder.CopyChunk;
            var indices = new SortedSet<long> { 0, 1, rowCount - 1 };
            for (long b = chunk; b < argument.ByteLength; b += chunk)
            {
                indices.Add(b / 12);
                indices.Add(Math.Min(b / 12 + 1, rowCount - 1));
            }
            using var session = Session();
            using var fixture = session.LoadFile(Fixture);
            using var rows = fixture.GetAttr("rows").Call(argument, indices.Select(i => (object?)i).ToList());
            Assert.That(rows.Items, Has.Count.EqualTo(indices.Count));
            foreach (var row in rows.Items)
                Assert.That(row.Items.Select(v => v.AsDouble()), Is.EqualTo(new[] { 1.5, 2.5, 3.5 }));
        }
        finally
        {
            Marshal.FreeHGlobal(memory);
        }
    }

    [Test]
    public void A_request_region_for_a_2_GiB_argument_reserves_at_most_64_MiB_more_not_the_next_power_of_two()
    {
        Assert.Multiple(() =>
        {
            Assert.That(WorkerProcess.RequestCapacity(1), Is.EqualTo(1L << 20));
            Assert.That(WorkerProcess.RequestCapacity((3L << 20) + 1), Is.EqualTo(4L << 20));
            Assert.That(WorkerProcess.RequestCapacity(64L << 20), Is.EqualTo(64L << 20));
            Assert.That(WorkerProcess.RequestCapacity((2L << 30) + 16), Is.EqualTo((2L << 30) + (64L << 20)));
            Assert.That(WorkerProcess.RequestCapacity(5L << 30), Is.EqualTo(5L << 30));
        });
    }
}
