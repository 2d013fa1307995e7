using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using Interop.Errors;
using Interop.Sessions;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>
/// A worker's process and regions shared by threads: one caller still uses them while another retires the dead
/// worker (or the session disposes it). Nothing may be unmapped or disposed under a user, and every failure is typed.
/// </summary>
[TestFixture]
[Category("isolated")]
[NonParallelizable]
public class WorkerLifetimeTests
{
    private static readonly TimeSpan Gone = TimeSpan.FromSeconds(10);

    [TearDown]
    public void NothingLeftBehind()
    {
        Assert.That(ShmLeftovers(Environment.ProcessId), Is.Empty, "no shared-memory names may outlive a test");
    }

    private static int WorkerPid(PythonRef fixture)
    {
        using var pid = fixture.GetAttr("pid").Call();
        return (int)pid.AsInt64();
    }

    /// <summary>
    /// Memory whose second <see cref="GetSpan"/> waits for the test: the first is <see cref="MemoryManager{T}.Memory"/>'s
    /// (it reads the length), the second is the payload copy into the request region.
    /// </summary>
    private sealed class GatedMemory(int length) : MemoryManager<float>
    {
        private readonly float[] _data = Enumerable.Range(0, length).Select(i => (float)i).ToArray();
        private int _calls;

        public ManualResetEventSlim CopyStarted { get; } = new();

        public ManualResetEventSlim Proceed { get; } = new();

        public override Span<float> GetSpan()
        {
            if (Interlocked.Increment(ref _calls) == 2)
            {
                CopyStarted.Set();
                Proceed.Wait(TimeSpan.FromSeconds(60));
            }
            return _data;
        }

        public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException();

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }

    [Test]
    public void A_caller_still_copying_into_the_region_of_a_killed_worker_gets_WorkerCrashedException_while_another_caller_retires_that_worker()
    {
        // The race, with the window held open: thread A is inside its argument's copy into the request region
        // when the worker is killed; thread B's call retires the dead worker (which used to unmap that region and
        // dispose the Process under A: a segfault in memmove, or "No process is associated with this object").
        using var session = Session(workers: 1);
        using var fixture = session.LoadFile(Fixture);
        using var describe = fixture.GetAttr("describe");
        var pid = WorkerPid(fixture);
        var gated = new GatedMemory(1 << 20); // 4 MiB
        var a = Task.Factory.StartNew(() => describe.Call(TensorArgument.Create<float>(gated.Memory)), TaskCreationOptions.LongRunning);
        try
        {
            Assert.That(gated.CopyStarted.Wait(TimeSpan.FromSeconds(30)), Is.True, "A reached its payload copy");
            Process.GetProcessById(pid).Kill();
            Assert.That(WaitUntilGone(pid, Gone), Is.True);
            var until = DateTime.UtcNow + Gone;
            while (session.WorkerProcessIds.Contains(pid) && DateTime.UtcNow < until)
                Thread.Sleep(20);
            var fresh = WorkerPid(fixture); // B: picks a worker, retires the dead one, starts a fresh one
            Assert.That(fresh, Is.Not.EqualTo(pid));
            gated.Proceed.Set();
            var e = Assert.Throws<WorkerCrashedException>(() => a.GetAwaiter().GetResult())!;
            Assert.Multiple(() =>
            {
                Assert.That(e.ProcessId, Is.EqualTo(pid));
                Assert.That(e.Signal, Is.EqualTo(9), e.Message);
            });
            using var again = describe.Call(TensorArgument.Create<float>(new float[] { 1, 2, 3 }));
            Assert.That(again["sum"].AsDouble(), Is.EqualTo(6.0), "the session goes on with the fresh worker");
        }
        finally
        {
            gated.Proceed.Set();
        }
    }

    [Test]
    public void Random_kills_of_pool_workers_fail_calls_only_with_WorkerCrashedException_and_leave_nothing_behind()
    {
        // The soak, bounded: a pool of 2, 8 callers (two pass 1 MiB arguments), a worker SIGKILLed every
        // 150-650 ms for 10 s. Every failure must be a WorkerCrashedException; no call may hang. (Only the two big
        // callers use torch: a fresh worker imports it in about a second, and the others keep traffic going meanwhile.)
        var session = Session(workers: 2);
        var fixture = session.LoadFile(Fixture);
        using var scale = fixture.GetAttr("scale");
        using var sleep = fixture.GetAttr("sleep");
        var failures = new ConcurrentQueue<Exception>();
        var wrong = new ConcurrentQueue<string>();
        int succeeded = 0, crashed = 0, kills = 0;
        var stop = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        var callers = Enumerable.Range(0, 8).Select(index => new Thread(() =>
        {
            var big = index < 2;
            var input = Enumerable.Range(0, big ? 1 << 18 : 16).Select(k => (float)(k % 1000 + index)).ToArray();
            while (DateTime.UtcNow < stop)
            {
                try
                {
                    if (big)
                    {
                        using var result = scale.Call(input, 0.5);
                        var got = result.ToArray<float>();
                        for (var k = 0; k < got.Length; k += 997)
                        {
                            if (got[k] != input[k] * 0.5f)
                            {
                                wrong.Enqueue($"caller {index}: element {k} is {got[k]}, not {input[k] * 0.5f}");
                                break;
                            }
                        }
                    }
                    else
                    {
                        using var result = sleep.Call(0.02);
                    }
                    Interlocked.Increment(ref succeeded);
                }
                catch (WorkerCrashedException)
                {
                    Interlocked.Increment(ref crashed);
                }
                catch (Exception e)
                {
                    failures.Enqueue(e);
                }
            }
        })
        { IsBackground = true, Name = $"soak caller {index}" }).ToArray();
        var killer = new Thread(() =>
        {
            var random = new Random(1234);
            while (DateTime.UtcNow < stop)
            {
                Thread.Sleep(random.Next(150, 650));
                var workers = WorkersOf(Environment.ProcessId);
                if (workers.Length == 0)
                    continue;
                try
                {
                    Process.GetProcessById(workers[random.Next(workers.Length)]).Kill();
                    Interlocked.Increment(ref kills);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                    // it ended meanwhile
                }
            }
        })
        { IsBackground = true, Name = "soak killer" };
        foreach (var t in callers)
            t.Start();
        killer.Start();
        var hung = callers.Where(t => !t.Join(TimeSpan.FromSeconds(90))).Select(t => t.Name).ToArray();
        killer.Join();
        session.Dispose();
        fixture.Dispose();
        var own = WorkersOf(Environment.ProcessId);
        Assert.Multiple(() =>
        {
            Assert.That(hung, Is.Empty, "calls that never returned");
            Assert.That(failures.Select(e => e.GetType().Name + ": " + e.Message), Is.Empty, "every failure must be a WorkerCrashedException");
            Assert.That(wrong, Is.Empty, "wrong results");
            Assert.That(kills, Is.GreaterThan(5));
            Assert.That(succeeded, Is.GreaterThan(0));
            Assert.That(crashed, Is.GreaterThan(0), "the kills hit pending calls");
            foreach (var pid in own)
                Assert.That(WaitUntilGone(pid, Gone), Is.True, $"worker {pid} outlived the session");
            Assert.That(ShmLeftovers(Environment.ProcessId), Is.Empty);
        });
        TestContext.Out.WriteLine($"soak: {succeeded} calls succeeded, {crashed} crashed, {kills} kills");
    }
}
