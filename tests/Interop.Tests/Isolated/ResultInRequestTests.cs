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

    [Test]
    public void An_argument_Python_keeps_and_returns_comes_back_as_it_was_when_the_call_returned()
    {
        using var kept = _viewOf.Call(Pattern(7), "kept");
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
        foreach (var argument in new object?[] { null, new float[] { 1, 2, 3 } })
        {
            var pid = session.WorkerProcessIds.SingleOrDefault();
            var e = Assert.Throws<WorkerProtocolException>(() => lie.Call(argument))!;
            Assert.That(e.Message, Does.Contain("request did not use"));
            Assert.That(session.WorkerProcessIds, Does.Not.Contain(pid), "a lying worker is not used again");
        }
        using var fine = fixture.GetAttr("view_of").Call(Pattern(1), "same");
        Assert.That(fine.AsReadOnlySpan<float>().SequenceEqual(Pattern(1)), Is.True, "a new worker answers");
    }
}
