using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>
/// Results answered inside the request region (an argument of 64 KiB or more returned as it came, changed in place, or
/// viewed contiguously): the host leases that region to the result, so each live result keeps its own bytes while
/// later calls run, a region comes back for reuse when its result is disposed, and a worker that lies about it is
/// refused.
/// </summary>
[TestFixture]
[Category("isolated")]
[Category("torch")]
[NonParallelizable]
public class ResultInRequestTests
{
    private const int Elements = 1 << 18; // 1 MiB of float32: answered in place (the worker's IN_REQUEST_BYTES is 64 KiB)

    private IsolatedSession _session = null!;
    private PythonRef _fixture = null!;
    private PythonRef _viewOf = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _session = Session();
        _fixture = _session.LoadFile(Fixture);
        _viewOf = _fixture.GetAttr("view_of");
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _viewOf.Dispose();
        _fixture.Dispose();
        _session.Dispose();
    }

    private static float[] Pattern(int seed, int length = Elements)
    {
        var values = new float[length];
        for (var i = 0; i < values.Length; i++)
            values[i] = i * 3 + seed;
        return values;
    }

    private WorkerProcess Worker => _session.LiveWorkers.Single();

    [Test]
    public void Live_results_over_their_arguments_keep_their_own_bytes_while_later_calls_run_and_their_regions_come_back()
    {
        using (_viewOf.Call(Pattern(-1), "same")) { } // the worker is up and its two request regions exist
        using (_viewOf.Call(Pattern(-2), "same")) { }
        var created = Worker.RequestRegionsCreated;
        // Five live results: each holds the region its argument was written into, so every later call needs another.
        var results = Enumerable.Range(0, 5).Select(k => _viewOf.Call(Pattern(k), "same")).ToList();
        try
        {
            for (var k = 0; k < results.Count; k++)
                Assert.That(results[k].AsReadOnlySpan<float>().SequenceEqual(Pattern(k)), Is.True, $"result {k} kept its bytes");
            Assert.That(results.Select(r => r.AsTensorData().Address).Distinct().Count(), Is.EqualTo(5));
            Assert.That(Worker.RequestRegionsCreated - created, Is.GreaterThanOrEqualTo(3),
                        "a leased request region is not written again: later calls take other regions");
        }
        finally
        {
            results.ForEach(r => r.Dispose());
        }
        // Disposed, the regions come back: calls that dispose their results make no new region.
        created = Worker.RequestRegionsCreated;
        for (var k = 0; k < 10; k++)
        {
            using var again = _viewOf.Call(Pattern(10 + k), "same");
            Assert.That(again.AsReadOnlySpan<float>()[Elements - 1], Is.EqualTo((Elements - 1) * 3f + 10 + k));
        }
        Assert.That(Worker.RequestRegionsCreated, Is.EqualTo(created), "returned request regions are reused");
    }

    private static int MappedRequestRegions(int pid) =>
        File.ReadAllLines($"/proc/{pid}/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length > 5 && f[5].Contains("/" + SharedRegion.NamePrefix, StringComparison.Ordinal))
            .Select(f => f[5]).Distinct().Count();

    [Test]
    public void Regions_returned_by_many_results_at_once_are_released_beyond_two_spares_in_both_processes()
    {
        var others = MappedRequestRegions(Environment.ProcessId); // the other sessions' (this fixture's), left alone here
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var viewOf = fixture.GetAttr("view_of");
        var results = Enumerable.Range(0, 8).Select(k => viewOf.Call(Pattern(k), "same")).ToList();
        var worker = session.LiveWorkers.Single();
        Assert.That(MappedRequestRegions(Environment.ProcessId) - others, Is.GreaterThanOrEqualTo(8));
        results.ForEach(r => r.Dispose());
        // Small calls copy their results back and fit their slots: only the releases bound what stays mapped.
        for (var k = 0; k < 3; k++)
            viewOf.Call(new float[] { k }, "same").Dispose();
        var bound = 2 + WorkerProcess.MaxSpareRequestRegions; // the two slots and the spares
        Assert.That(MappedRequestRegions(Environment.ProcessId) - others, Is.LessThanOrEqualTo(bound), "host");
        Assert.That(MappedRequestRegions(worker.ProcessId), Is.LessThanOrEqualTo(bound), "worker: told to drop the others");
    }

    [Test]
    public void An_argument_changed_in_place_or_viewed_comes_back_changed_and_the_callers_array_does_not()
    {
        var source = Pattern(5);
        using var doubled = _viewOf.Call(source, "doubled_in_place");
        using var tail = _viewOf.Call(source, "tail");
        Assert.Multiple(() =>
        {
            Assert.That(doubled.AsReadOnlySpan<float>().SequenceEqual(Pattern(5).Select(v => v * 2).ToArray()), Is.True);
            Assert.That(tail.Shape.ToArray(), Is.EqualTo(new long[] { Elements - 3 }));
            Assert.That(tail.AsReadOnlySpan<float>().SequenceEqual(Pattern(5).AsSpan(3)), Is.True);
            Assert.That(source.SequenceEqual(Pattern(5)), Is.True, "the .NET argument was copied, not shared");
        });
    }

    [TestCase("kept", ArrayConversion.Torch)]
    [TestCase("kept_view", ArrayConversion.Torch)]
    [TestCase("kept", ArrayConversion.NumPy)]
    [TestCase("kept_view", ArrayConversion.NumPy)] // x[:] of an ndarray is based on the array under the one decoded
    public void An_argument_Python_keeps_and_returns_comes_back_as_it_was_when_the_call_returned(string how, ArrayConversion arrays)
    {
        using var kept = _viewOf.Call([Pattern(7), how], new CallOptions { Arrays = arrays });
        using (_fixture.GetAttr("change_kept").Call(-1L, 42.0)) { } // Python changes its kept argument later
        using var other = _viewOf.Call(Pattern(8), "same"); // and later calls run
        Assert.That(kept.AsReadOnlySpan<float>().SequenceEqual(Pattern(7)), Is.True, "the result is a copy, not the kept argument");
        Assert.That(other.AsReadOnlySpan<float>().SequenceEqual(Pattern(8)), Is.True);
    }

    [Test]
    public void Results_made_disposed_and_read_on_many_threads_of_a_pool_each_keep_their_own_bytes()
    {
        using var pool = Session(workers: 2);
        using var fixture = pool.LoadFile(Fixture);
        using var viewOf = fixture.GetAttr("view_of");
        var handOff = new System.Collections.Concurrent.ConcurrentQueue<(PythonValue Value, int Seed)>();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            try
            {
                for (var i = 0; i < 25; i++)
                {
                    var seed = t * 1000 + i;
                    var value = viewOf.Call(Pattern(seed, 1 << 16), i % 3 == 0 ? "doubled_in_place" : "same");
                    var expected = Pattern(seed, 1 << 16).Select(v => i % 3 == 0 ? v * 2 : v).ToArray();
                    if (!value.AsReadOnlySpan<float>().SequenceEqual(expected))
                        failures.Enqueue($"thread {t} call {i}: wrong bytes");
                    if (i % 2 == 0)
                    {
                        value.Dispose();
                    }
                    else
                    {
                        handOff.Enqueue((value, seed)); // another thread checks and disposes it, while calls go on
                    }
                    while (handOff.Count > 6 && handOff.TryDequeue(out var other))
                    {
                        var twice = other.Seed % 1000 % 3 == 0;
                        if (!other.Value.AsReadOnlySpan<float>().SequenceEqual(Pattern(other.Seed, 1 << 16).Select(v => twice ? v * 2 : v).ToArray()))
                            failures.Enqueue($"result {other.Seed}: changed while it was live");
                        other.Value.Dispose();
                    }
                }
            }
            catch (Exception e)
            {
                failures.Enqueue(e.GetType().Name + ": " + e.Message);
            }
        })).ToArray();
        foreach (var t in threads)
            t.Start();
        foreach (var t in threads)
            t.Join();
        while (handOff.TryDequeue(out var left))
            left.Value.Dispose();
        Assert.That(failures, Is.Empty);
    }

    [Test]
    public void A_reply_that_claims_a_request_region_its_request_did_not_use_is_refused_and_the_worker_replaced()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var lie = fixture.GetAttr("lie_in_request");
        using var workerPid = fixture.GetAttr("pid");
        foreach (var (argument, asList) in new (object?, bool)[] { (null, false), (new float[] { 1, 2, 3 }, false), (new float[] { 1, 2 }, true) })
        {
            int pid;
            using (var answer = workerPid.Call())
                pid = (int)answer.AsInt64(); // a live worker (the previous lie ended the last one)
            var e = Assert.Throws<WorkerProtocolException>(() => lie.Call(argument, asList))!; // a list: a JSON reply
            Assert.That(e.Message, Does.Contain("request did not use"));
            Assert.That(session.WorkerProcessIds, Does.Not.Contain(pid), "a lying worker is not used again");
        }
        using var fine = fixture.GetAttr("view_of").Call(Pattern(1), "same");
        Assert.That(fine.AsReadOnlySpan<float>().SequenceEqual(Pattern(1)), Is.True, "a new worker answers");
    }
}
