using System.Diagnostics;
using System.Text.Json.Nodes;
using Interop.Embedding;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>
/// The shared control block (frames and futex doorbells in shared memory, docs/isolated.md): what a hostile worker
/// writes there is refused, a worker that dies while the host spins or sleeps is noticed, large frames still travel,
/// the pipes-only transport still works, and results written in place with <c>interop_helpers.output.empty</c>.
/// </summary>
[TestFixture]
[Category("isolated")]
[NonParallelizable]
public class ControlBlockTests
{
    // ---- the block alone ---------------------------------------------------------------------------------

    [Test]
    public void A_reply_sequence_that_is_neither_the_previous_nor_the_request_is_refused()
    {
        using var block = ControlBlock.Create();
        var sequence = block.Post("{}"u8, onPipe: false);
        block.WriteWordForTest(ControlBlock.ReplySeqOffsetForTest, sequence + 1000);
        var e = Assert.Throws<WorkerProtocolException>(() => block.WaitForReply(sequence, () => false))!;
        Assert.That(e.Message, Does.Contain("reply sequence"));
    }

    [TestCase(0u)]
    [TestCase((uint)ControlBlock.AreaSize + 1)]
    [TestCase(0x7FFF_FFFFu)]
    public void A_reply_length_outside_the_reply_area_is_refused_before_reading(uint length)
    {
        using var block = ControlBlock.Create();
        var sequence = block.Post("{}"u8, onPipe: false);
        block.WriteWordForTest(ControlBlock.ReplyLengthOffsetForTest, length);
        block.WriteWordForTest(ControlBlock.ReplySeqOffsetForTest, sequence);
        Assert.That(block.WaitForReply(sequence, () => false), Is.True);
        var e = Assert.Throws<WorkerProtocolException>(() => block.ReadReply())!;
        Assert.That(e.Message, Does.Contain("reply length"));
    }

    [Test]
    public void A_wait_without_a_reply_ends_when_its_stop_condition_holds()
    {
        using var block = ControlBlock.Create();
        var sequence = block.Post("{}"u8, onPipe: false);
        var checks = 0;
        Assert.That(block.WaitForReply(sequence, () => ++checks >= 3), Is.False);
        Assert.That(checks, Is.EqualTo(3), "the stop condition is checked between futex slices");
    }

    [Test]
    public void A_worker_that_rings_the_host_without_replying_cannot_keep_it_spinning()
    {
        // A woken host spins for the reply (the worker rang ahead of copying a large result), once: a hostile worker
        // that rings every millisecond and never answers must not turn each ring into a spin, or the host's waiting
        // thread burns a core (and holds a spinner slot) for as long as the call waits, for a few system calls a second.
        var saved = ControlBlock.SpinMicroseconds;
        ControlBlock.SpinMicroseconds = 2_000; // longer than the gap between rings: unlimited spins would never end
        try
        {
            using var block = ControlBlock.Create();
            var sequence = block.Post("{}"u8, onPipe: false);
            var until = Stopwatch.GetTimestamp() + Stopwatch.Frequency; // a one-second wait
            long cpu = -1;
            var waiter = new Thread(() =>
            {
                var start = ThreadCpuNanoseconds();
                block.WaitForReply(sequence, () => Stopwatch.GetTimestamp() > until);
                cpu = ThreadCpuNanoseconds() - start;
            });
            waiter.Start();
            var rings = 0;
            while (waiter.IsAlive)
            {
                block.WakeHost(); // FUTEX_WAKE on the reply sequence, as the worker's wake_host_ahead does
                rings++;
                Thread.Sleep(1);
            }
            waiter.Join();
            Assert.That(rings, Is.GreaterThan(100));
            Assert.That(cpu, Is.LessThan(250_000_000L), $"the waiting thread ran {cpu / 1e6:0} ms of the one-second wait ({rings} rings)");
        }
        finally
        {
            ControlBlock.SpinMicroseconds = saved;
        }
    }

    /// <summary>CPU time of the calling thread (Linux: the first field of /proc/thread-self/schedstat).</summary>
    private static long ThreadCpuNanoseconds() => long.Parse(File.ReadAllText("/proc/thread-self/schedstat").Split(' ')[0]);

    [Test]
    public void A_request_frame_larger_than_the_area_is_refused_by_the_block()
    {
        using var block = ControlBlock.Create();
        Assert.Throws<ArgumentOutOfRangeException>(() => block.Post(new byte[ControlBlock.AreaSize + 1], onPipe: false));
    }

    // ---- a real worker -----------------------------------------------------------------------------------

    [TestCase("sequence", "reply sequence")]
    [TestCase("length", "reply length")]
    [TestCase("binary-truncated", "ends inside")]
    [TestCase("binary-region", "never announced")]
    public void A_worker_that_scribbles_on_its_control_block_gets_WorkerProtocolException_and_is_replaced(string kind, string named)
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var before = fixture.GetAttr("pid").Call();
        var e = Assert.Throws<WorkerProtocolException>(() => fixture.GetAttr("scribble_control").Call(kind))!;
        Assert.That(e.Message, Does.Contain(named));
        Assert.That(WaitUntilGone((int)before.AsInt64(), TimeSpan.FromSeconds(10)), Is.True, "the hostile worker is stopped");
        using var after = fixture.GetAttr("pid").Call();
        Assert.That(after.AsInt64(), Is.Not.EqualTo(before.AsInt64()), "the next call runs on a fresh worker");
    }

    [Test]
    public void A_worker_killed_while_the_host_spins_gives_WorkerCrashedException_before_the_spin_would_end()
    {
        var saved = ControlBlock.SpinMicroseconds;
        ControlBlock.SpinMicroseconds = 20_000_000; // 20 s of spinning: only the checks inside the spin can end it
        try
        {
            using var session = Session();
            using var fixture = session.LoadFile(Fixture);
            using var pidValue = fixture.GetAttr("pid").Call();
            var pid = (int)pidValue.AsInt64();
            var watch = Stopwatch.StartNew();
            var call = fixture.GetAttr("sleep").CallAsync([30.0], null);
            Thread.Sleep(300);
            Process.GetProcessById(pid).Kill();
            var e = Assert.ThrowsAsync<WorkerCrashedException>(async () => await call)!;
            Assert.That(e.Signal, Is.EqualTo(9));
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(15)), "the death was noticed during the spin");
        }
        finally
        {
            ControlBlock.SpinMicroseconds = saved;
        }
    }

    [TestCase("die")]
    [TestCase("hang")]
    public void A_worker_that_rings_the_host_ahead_then_dies_or_hangs_is_noticed_inside_the_spin_after_the_wake(string action)
    {
        // The host sleeps (no first spin), the worker rings it as before copying a large result, so the host spins for
        // the reply (20 s: only the checks inside that spin can end it); then the worker dies, or never answers and
        // the call times out.
        var saved = ControlBlock.SpinMicroseconds;
        try
        {
            using var session = Session(timeout: action == "hang" ? TimeSpan.FromSeconds(1) : null);
            using var fixture = session.LoadFile(Fixture);
            using (fixture.GetAttr("pid").Call()) { }
            ControlBlock.SpinMicroseconds = 0;
            var watch = Stopwatch.StartNew();
            var call = fixture.GetAttr("ring_host_then").CallAsync([action, action == "die" ? 1.0 : 30.0, 3], null);
            Thread.Sleep(300);
            ControlBlock.SpinMicroseconds = 20_000_000;
            if (action == "die")
                Assert.That(Assert.ThrowsAsync<WorkerCrashedException>(async () => await call)!.Signal, Is.EqualTo(9));
            else
                Assert.ThrowsAsync<WorkerTimeoutException>(async () => await call);
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(8)), "noticed during the spin");
        }
        finally
        {
            ControlBlock.SpinMicroseconds = saved;
        }
    }

    [Test]
    public void A_reply_after_rings_without_one_arrives()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var rings = fixture.GetAttr("ring_host_then").Call("answer", 0.05, 3);
        Assert.That(rings.AsInt64(), Is.EqualTo(3));
    }

    [Test]
    public void A_worker_killed_while_the_host_sleeps_on_the_futex_gives_WorkerCrashedException()
    {
        var saved = ControlBlock.SpinMicroseconds;
        ControlBlock.SpinMicroseconds = 0;
        try
        {
            using var session = Session();
            using var fixture = session.LoadFile(Fixture);
            using var pidValue = fixture.GetAttr("pid").Call();
            var call = fixture.GetAttr("sleep").CallAsync([30.0], null);
            Thread.Sleep(300);
            Process.GetProcessById((int)pidValue.AsInt64()).Kill();
            var e = Assert.ThrowsAsync<WorkerCrashedException>(async () => await call)!;
            Assert.That(e.Signal, Is.EqualTo(9));
        }
        finally
        {
            ControlBlock.SpinMicroseconds = saved;
        }
    }

    [Test]
    public void Frames_larger_than_the_control_block_travel_over_the_pipes_both_ways()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        var text = new string('x', 3 * ControlBlock.AreaSize);
        for (var i = 0; i < 3; i++)
        {
            using var echo = fixture.GetAttr("echo").Call(text, i);
            Assert.That(echo["args"][0].AsString(), Is.EqualTo(text));
            using var small = fixture.GetAttr("echo").Call(i);
            Assert.That(small["args"][0].AsInt64(), Is.EqualTo(i), "small frames after a large one go through the block again");
        }
    }

    [Test]
    public void Without_a_control_block_the_worker_serves_over_the_pipes()
    {
        using var worker = WorkerProcess.Start(TestPython.Executable, PythonRuntime.FindHelperDirectory(new PythonOptions())!, TimeSpan.FromSeconds(60),
                                               echoStderr: false, useControlBlock: false);
        for (var i = 0; i < 3; i++)
        {
            var reply = worker.Exchange(_ => new JsonObject
            {
                ["op"] = "call",
                ["target"] = new JsonObject { ["base"] = "module", ["name"] = "builtins", ["attrs"] = new JsonArray("abs") },
                ["args"] = new JsonArray(new JsonObject { ["t"] = "int", ["v"] = -i }),
            }, null, CancellationToken.None);
            Assert.That(reply.Value.IntValue, Is.EqualTo(i));
        }
    }

    // ---- results written in place (interop_helpers.output.empty) ------------------------------------------

    [Test]
    [Category("torch")]
    public void Results_written_into_a_result_region_arrive_intact_and_stay_valid_while_later_calls_run()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var scale = fixture.GetAttr("scale_in_place");
        var input = Enumerable.Range(0, 1000).Select(i => (float)i).ToArray();
        using var doubled = scale.Call(input, 2.0);
        using var tripled = scale.Call(input, 3.0);
        Assert.Multiple(() =>
        {
            Assert.That(doubled.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(input.Select(v => v * 2).ToArray()));
            Assert.That(tripled.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(input.Select(v => v * 3).ToArray()),
                        "the second call wrote into another region: the first result is still intact");
            Assert.That(doubled.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(input.Select(v => v * 2).ToArray()));
        });
        using var mixed = fixture.GetAttr("in_place_and_copied").Call(input);
        Assert.Multiple(() =>
        {
            Assert.That(mixed[0].AsReadOnlySpan<float>().ToArray(), Is.EqualTo(input));
            Assert.That(mixed[1].AsReadOnlySpan<float>().ToArray(), Is.EqualTo(input.Select(v => v * 3).ToArray()));
        });
    }

    [Test]
    [Category("torch")]
    public void An_output_the_worker_keeps_is_never_reused_for_later_results()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        var input = new float[] { 1, 2, 3, 4 };
        using (var kept = fixture.GetAttr("keep_output").Call(input))
            Assert.That(kept.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(input));
        // The host released the region; later results (in place or copied) must go elsewhere.
        for (var i = 0; i < 6; i++)
        {
            using var other = fixture.GetAttr("scale_in_place").Call(new float[] { 9, 9, 9, 9 }, 1.0);
            using var copied = fixture.GetAttr("echo").Call(new float[] { 8, 8, 8, 8 });
        }
        using var values = fixture.GetAttr("kept_outputs").Call();
        Assert.That(values[0].Items.Select(v => v.AsDouble()).ToArray(), Is.EqualTo(new double[] { 1, 2, 3, 4 }));
    }

    [Test]
    [Category("torch")]
    public void The_same_output_function_runs_in_process_with_ordinary_tensors()
    {
        using var session = PythonSession.InProcess();
        using var fixture = session.LoadFile(Fixture);
        using var tripled = fixture.GetAttr("scale_in_place").Call(new float[] { 1, 2 }, 3.0);
        Assert.That(tripled.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(new float[] { 3, 6 }));
    }
}
