using System.Diagnostics;
using System.Globalization;
using Interop.Isolated;
using Interop.Errors;
using Interop.Sessions;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>Real crashes, hangs, kills and shutdowns of worker processes: the host lives on, nothing is left behind.</summary>
[TestFixture]
[Category("isolated")]
[NonParallelizable]
public class ReliabilityTests
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

    [Test]
    public void A_segfault_gives_the_pending_call_WorkerCrashedException_with_the_signal_and_the_next_call_a_fresh_worker()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var before = fixture.GetAttr("scale").Call(new float[] { 1, 2 }); // a live result region of the dying worker
        var pid = WorkerPid(fixture);
        var e = Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("segfault").Call())!;
        Assert.Multiple(() =>
        {
            Assert.That(e.ProcessId, Is.EqualTo(pid));
            Assert.That(e.Signal, Is.EqualTo(11), e.Message);
            Assert.That(e.WorkerOutput, Does.Contain("Segmentation fault").Or.Contain("segfault"), "faulthandler's stack");
            Assert.That(WaitUntilGone(pid, Gone), Is.True);
            Assert.That(before.ToArray<float>(), Is.EqualTo(new float[] { 2, 4 }), "results already received stay readable");
        });
        var fresh = WorkerPid(fixture);
        Assert.That(fresh, Is.Not.EqualTo(pid));
    }

    [Test]
    public void Os_exit_gives_WorkerCrashedException_with_the_exit_code()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        var pid = WorkerPid(fixture);
        var e = Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("exit_now").Call(7))!;
        Assert.Multiple(() =>
        {
            Assert.That(e.ExitCode, Is.EqualTo(7));
            Assert.That(e.Signal, Is.Null);
            Assert.That(WaitUntilGone(pid, Gone), Is.True);
        });
        Assert.That(WorkerPid(fixture), Is.Not.EqualTo(pid));
    }

    [Test]
    public void A_worker_that_dies_while_a_process_it_forked_lives_on_fails_its_call_at_once()
    {
        // The forked child inherits every descriptor of the worker: the control pipe's EOF and the end of its stderr
        // must not wait for the child.
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        var pidFile = Path.GetTempFileName();
        var watch = Stopwatch.StartNew();
        try
        {
            var e = Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("fork_then_exit").Call(pidFile, 30.0))!;
            Assert.That(e.ExitCode, Is.EqualTo(5));
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), "the call waited for the worker's child");
            using var again = fixture.GetAttr("pid").Call();
        }
        finally
        {
            if (int.TryParse(File.ReadAllText(pidFile), out var child))
            {
                try
                {
                    Process.GetProcessById(child).Kill();
                }
                catch (ArgumentException)
                {
                    // already gone
                }
            }
            File.Delete(pidFile);
        }
    }

    [Test]
    public void A_killed_worker_fails_its_pending_call_and_objects_it_held_but_not_module_calls()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var counter = fixture.GetAttr("Counter").Call(1);
        var pid = WorkerPid(fixture);
        using var sleep = fixture.GetAttr("sleep");
        var call = sleep.CallAsync([30.0], null);
        Thread.Sleep(500);
        Process.GetProcessById(pid).Kill();
        var e = Assert.ThrowsAsync<WorkerCrashedException>(async () => await call)!;
        Assert.That(e.Signal, Is.EqualTo(9), e.Message);
        Assert.Throws<WorkerCrashedException>(() => counter.AsRef().GetAttr("add").Call(1), "objects of the dead worker are gone");
        Assert.That(WorkerPid(fixture), Is.Not.EqualTo(pid), "a module-level call starts a fresh worker");
    }

    [Test]
    public void Without_restart_every_later_call_gets_the_crash()
    {
        using var session = Session(restart: false);
        using var fixture = session.LoadFile(Fixture);
        var pid = WorkerPid(fixture);
        Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("exit_now").Call(3));
        var later = Assert.Throws<WorkerCrashedException>(() => fixture.GetAttr("pid").Call())!;
        Assert.That(later.ProcessId, Is.EqualTo(pid));
        Assert.That(later.ExitCode, Is.EqualTo(3));
    }

    [Test]
    public void A_hung_call_times_out_the_worker_is_replaced_and_the_host_waits_no_longer_than_the_timeout()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        var pid = WorkerPid(fixture);
        var watch = Stopwatch.StartNew();
        var e = Assert.Throws<WorkerTimeoutException>(() => fixture.GetAttr("sleep").Call([60.0], new CallOptions { Timeout = TimeSpan.FromSeconds(1) }))!;
        Assert.Multiple(() =>
        {
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "abandoned, not waited for");
            Assert.That(e.ProcessId, Is.EqualTo(pid));
            Assert.That(WaitUntilGone(pid, Gone), Is.True);
        });
        Assert.That(WorkerPid(fixture), Is.Not.EqualTo(pid));
        using var quick = fixture.GetAttr("sleep").Call([0.01], new CallOptions { Timeout = TimeSpan.FromSeconds(30) });
        Assert.That(quick.AsDouble(), Is.EqualTo(0.01));
    }

    [Test]
    public void The_default_timeout_applies_when_the_call_sets_none()
    {
        using var session = Session(timeout: TimeSpan.FromMilliseconds(500));
        using var fixture = session.LoadFile(Fixture);
        Assert.Throws<WorkerTimeoutException>(() => fixture.GetAttr("sleep").Call(60.0));
    }

    [Test]
    public async Task Cancelling_the_token_abandons_the_call_and_replaces_the_worker()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        var pid = WorkerPid(fixture);
        using var sleep = fixture.GetAttr("sleep");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
        var call = sleep.CallAsync([60.0], null, cts.Token);
        Assert.That(async () => await call, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(WaitUntilGone(pid, Gone), Is.True);
        using var after = await sleep.CallAsync([0.0], null);
        Assert.That(WorkerPid(fixture), Is.Not.EqualTo(pid));
    }

    [Test]
    public void Request_regions_reserve_their_memory_up_front_so_a_full_dev_shm_is_an_exception_not_a_SIGBUS()
    {
        // A sparse tmpfs file is backed page by page on first write; when /dev/shm is full (Docker's default is 64 MiB)
        // that write raises SIGBUS and kills the host. Reserved pages make a full /dev/shm fail at creation instead.
        const long size = 1 << 20;
        using var region = SharedRegion.CreateForRequests(1, size);
        var stat = Process.Start(new ProcessStartInfo("stat", ["-L", "-c", "%b %B", $"/proc/{Environment.ProcessId}/fd/{region.FileDescriptor}"])
        {
            RedirectStandardOutput = true,
        })!;
        var fields = stat.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.TrimEntries);
        stat.WaitForExit();
        Assert.That(long.Parse(fields[0], CultureInfo.InvariantCulture) * long.Parse(fields[1], CultureInfo.InvariantCulture), Is.GreaterThanOrEqualTo(size),
                    "allocated bytes of the request region");
    }

    [Test]
    public void Disposing_the_session_ends_every_worker_and_leaves_no_shared_memory()
    {
        var session = Session(workers: 3);
        using var fixture = session.LoadFile(Fixture);
        Parallel.For(0, 12, _ => { using var v = fixture.GetAttr("scale").Call(new float[4096]); });
        var pids = session.WorkerProcessIds.ToArray();
        Assert.That(pids, Is.Not.Empty);
        session.Dispose();
        Assert.Multiple(() =>
        {
            foreach (var pid in pids)
                Assert.That(WaitUntilGone(pid, Gone), Is.True, $"worker {pid} outlived Dispose");
            Assert.That(WorkersOf(Environment.ProcessId), Is.Empty);
        });
        Assert.Throws<ObjectDisposedException>(() => fixture.GetAttr("pid"));
    }

    [Test]
    public void Disposing_a_session_whose_workers_are_all_busy_takes_one_grace_period_not_one_per_worker()
    {
        var session = Session(workers: 3);
        var fixture = session.LoadFile(Fixture);
        // Dedicated threads: three blocked thread-pool threads on a 2-core machine would wait for the pool to grow.
        var calls = Enumerable.Range(0, 3).Select(_ => Task.Factory.StartNew(() => fixture.GetAttr("sleep").Call(60.0), TaskCreationOptions.LongRunning)).ToArray();
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (session.WorkerProcessIds.Count < 3 && DateTime.UtcNow < until)
            Thread.Sleep(50);
        Thread.Sleep(500);
        var pids = session.WorkerProcessIds.ToArray();
        var watch = Stopwatch.StartNew();
        session.Dispose();
        watch.Stop();
        Assert.Multiple(() =>
        {
            Assert.That(pids, Has.Length.EqualTo(3));
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "Dispose waits 2 s for a busy worker, then kills it");
            foreach (var call in calls)
                Assert.That(() => call.GetAwaiter().GetResult(), Throws.InstanceOf<ObjectDisposedException>());
            foreach (var pid in pids)
                Assert.That(WaitUntilGone(pid, Gone), Is.True, $"worker {pid} outlived Dispose");
        });
        fixture.Dispose();
    }

    [Test]
    public void Calls_arriving_together_spread_over_the_pool_instead_of_queueing_on_one_idle_worker()
    {
        using var session = Session(workers: 3);
        using var fixture = session.LoadFile(Fixture);
        using var pidAfter = fixture.GetAttr("pid_after");
        using var start = new Barrier(3);
        var threads = Enumerable.Range(0, 3).Select(_ => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            using var pid = pidAfter.Call(1.0);
            return pid.AsInt64();
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(threads);
        Assert.That(threads.Select(t => t.Result).Distinct().Count(), Is.EqualTo(3),
            "each of three simultaneous calls must get its own worker of the pool of three");
    }

    [Test]
    public void Several_threads_call_at_once_across_a_pool_of_workers_with_their_own_GILs()
    {
        using var session = Session(workers: 3);
        using var fixture = session.LoadFile(Fixture);
        using var scale = fixture.GetAttr("scale");
        using var pidFn = fixture.GetAttr("pid");
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<long, int>();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, thread =>
        {
            for (var i = 0; i < 40; i++)
            {
                var input = Enumerable.Range(0, 64).Select(k => (float)(thread * 1000 + i * 64 + k)).ToArray();
                using var result = scale.Call([input], new CallOptions { KeywordArguments = new Dictionary<string, object?> { ["factor"] = 0.5 } });
                var got = result.ToArray<float>();
                if (!got.SequenceEqual(input.Select(x => x * 0.5f)))
                    errors.Enqueue($"thread {thread} call {i}: wrong result");
                using var p = pidFn.Call();
                seen.AddOrUpdate(p.AsInt64(), 1, (_, n) => n + 1);
            }
        });
        Assert.That(errors, Is.Empty);
        Assert.That(seen.Keys, Has.Count.GreaterThan(1), "calls were spread over several workers");
        Assert.That(session.WorkerProcessIds, Has.Count.LessThanOrEqualTo(3));
    }

    [Test]
    public void A_host_killed_while_it_creates_a_large_request_region_leaves_no_name_in_dev_shm()
    {
        // Reserving 1 GiB of /dev/shm takes a few hundred ms. The name must be gone before that starts: the child host
        // is SIGKILLed as soon as it holds the new region's descriptor (seen in /proc/PID/fd).
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { TestPython.CliDll, "isolated-child", "--pass-mib", "1024" })
            start.ArgumentList.Add(a);
        start.Environment["INTEROP_PYTHON"] = TestPython.Executable;
        using var host = Process.Start(start)!;
        var stderr = host.StandardError.ReadToEndAsync();
        var line = host.StandardOutput.ReadLine();
        var passing = host.StandardOutput.ReadLine();
        if (line is null || !line.StartsWith("worker ", StringComparison.Ordinal) || passing != "passing")
        {
            host.Kill();
            Assert.Fail("the child host did not start its worker: " + stderr.Result);
        }
        var workerPid = int.Parse(line!["worker ".Length..], CultureInfo.InvariantCulture);
        var hostPid = host.Id;
        var second = $"/dev/shm/interop-{hostPid}-2"; // the first region (1 MiB) is -1
        var seen = false;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!seen && DateTime.UtcNow < until && !host.HasExited)
        {
            try
            {
                seen = new DirectoryInfo($"/proc/{hostPid}/fd").EnumerateFileSystemInfos()
                    .Any(fd => fd.LinkTarget is { } target && target.StartsWith(second, StringComparison.Ordinal));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // a descriptor closed while it was read
            }
        }
        host.Kill(); // SIGKILL: no handler of the host runs
        host.WaitForExit();
        Assert.That(seen, Is.True, "the child never opened its large request region");
        Assert.Multiple(() =>
        {
            Assert.That(ShmLeftovers(hostPid), Is.Empty, "a name of the killed host is left in /dev/shm");
            Assert.That(WaitUntilGone(workerPid, Gone), Is.True, "the worker must notice its host is gone");
        });
    }

    [Test]
    public void Names_that_dead_hosts_left_in_dev_shm_are_removed_and_those_of_live_processes_kept()
    {
        // A host killed in the microseconds between a region's open and its unlink leaves a name; the next host cleans it.
        if (!Directory.Exists("/dev/shm"))
            Assert.Ignore("no /dev/shm on this machine");
        using var exited = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        exited.WaitForExit();
        var dead = $"/dev/shm/interop-{exited.Id}-{Guid.NewGuid():N}";
        var live = $"/dev/shm/interop-1-{Guid.NewGuid():N}"; // pid 1 always exists
        File.WriteAllBytes(dead, []);
        File.WriteAllBytes(live, []);
        try
        {
            Assert.That(SharedRegion.RemoveStaleNames(), Is.GreaterThanOrEqualTo(1));
            Assert.Multiple(() =>
            {
                Assert.That(File.Exists(dead), Is.False, "the dead host's name");
                Assert.That(File.Exists(live), Is.True, "a live process's name");
            });
        }
        finally
        {
            File.Delete(dead);
            File.Delete(live);
        }
    }

    [Test]
    public void A_host_killed_with_SIGKILL_takes_its_worker_with_it()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(TestPython.CliDll);
        start.ArgumentList.Add("isolated-child");
        start.Environment["INTEROP_PYTHON"] = TestPython.Executable;
        using var host = Process.Start(start)!;
        var stderr = host.StandardError.ReadToEndAsync();
        var line = host.StandardOutput.ReadLine();
        if (line is null || !line.StartsWith("worker ", StringComparison.Ordinal))
        {
            host.Kill();
            Assert.Fail("the child host did not start its worker: " + stderr.Result);
        }
        var workerPid = int.Parse(line!["worker ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(ProcessExists(workerPid), Is.True);
        var hostPid = host.Id;
        host.Kill(); // SIGKILL: no handler of the host runs
        host.WaitForExit();
        Assert.Multiple(() =>
        {
            Assert.That(WaitUntilGone(workerPid, Gone), Is.True, "the worker must notice its host is gone");
            Assert.That(WorkersOf(hostPid), Is.Empty);
            Assert.That(ShmLeftovers(hostPid), Is.Empty);
        });
    }
}
