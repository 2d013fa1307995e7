using System.Globalization;
using System.Runtime.CompilerServices;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using Interop.Torch;
using static Interop.Tests.Isolated.IsolatedTestSupport;

namespace Interop.Tests.Isolated;

/// <summary>The isolated session behind the common API: values, tensors through shared memory, errors, references.</summary>
[TestFixture]
[Category("isolated")]
[Category("torch")]
[NonParallelizable]
public class IsolatedCallTests
{
    private IsolatedSession _session = null!;
    private PythonRef _fixture = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _session = Session();
        _fixture = _session.LoadFile(Fixture);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _fixture.Dispose();
        _session.Dispose();
    }

    [Test]
    public void Binary_calls_carry_every_NumPy_dtype_and_the_scalars_both_ways()
    {
        // Positional scalars and arrays: binary frames both ways (WireBinary), whose dtype code is the row's index in
        // both tables; a str result (dtype_of) comes back as JSON.
        using var same = _fixture.GetAttr("same");
        using var dtypeOf = _fixture.GetAttr("dtype_of");
        var numpy = new CallOptions { Arrays = ArrayConversion.NumPy };
        foreach (var dtype in DTypes.DType.All.Where(d => d.NumPyName is not null && d.ClrType is not null))
        {
            var array = Array.CreateInstance(dtype.ClrType!, 3);
            using var seen = dtypeOf.Call([array, 7L, -0.0, true, null], numpy);
            Assert.That(seen.AsString(), Is.EqualTo($"ndarray {dtype.NumPyName} [('int', 7), ('float', -0.0), ('bool', True), ('NoneType', None)]"), dtype.Name);
            using var back = same.Call([array], numpy);
            Assert.That((back.DType, back.Shape.ToArray()), Is.EqualTo((dtype, new long[] { 3 })), dtype.Name);
        }
        using var integer = same.Call(long.MinValue);
        using var real = same.Call(-0.0);
        using var flag = same.Call(false);
        using var none = same.Call((object?)null);
        Assert.Multiple(() =>
        {
            Assert.That(integer.AsInt64(), Is.EqualTo(long.MinValue));
            Assert.That(double.IsNegative(real.AsDouble()) && real.AsDouble() == 0, Is.True, "-0.0 keeps its sign");
            Assert.That(flag.AsBool(), Is.False);
            Assert.That(none.IsNone, Is.True);
        });
    }

    [Test]
    public void The_worker_is_another_process_and_scalars_round_trip()
    {
        using var pid = _fixture.GetAttr("pid").Call();
        using var sqrt = _session.Import("math").GetAttr("sqrt");
        using var root = sqrt.Call(16.0);
        using var echo = _fixture.GetAttr("echo").Call([1, -2L, 2.5, "text", true, null, new object?[] { 1, "a" }, (Half)0.5],
                                                      new CallOptions { KeywordArguments = new Dictionary<string, object?> { ["k"] = double.NaN } });
        Assert.Multiple(() =>
        {
            Assert.That(pid.AsInt64(), Is.Not.EqualTo(Environment.ProcessId));
            Assert.That(_session.WorkerProcessIds, Does.Contain((int)pid.AsInt64()));
            Assert.That(root.AsDouble(), Is.EqualTo(4.0));
            var args = echo["args"].Items;
            Assert.That(args[0].AsInt64(), Is.EqualTo(1));
            Assert.That(args[1].AsInt64(), Is.EqualTo(-2));
            Assert.That(args[2].AsDouble(), Is.EqualTo(2.5));
            Assert.That(args[3].AsString(), Is.EqualTo("text"));
            Assert.That(args[4].AsBool(), Is.True);
            Assert.That(args[5].IsNone, Is.True);
            Assert.That(args[6].Items[1].AsString(), Is.EqualTo("a"));
            Assert.That(args[7].AsDouble(), Is.EqualTo(0.5), "a Half scalar (not IConvertible) is a float");
            Assert.That(double.IsNaN(echo["kwargs"]["k"].AsDouble()), Is.True);
        });
    }

    [Test]
    public void A_Python_exception_arrives_typed_with_its_traceback_and_the_worker_lives_on()
    {
        var e = Assert.Throws<PythonErrorException>(() => _fixture.GetAttr("raise_value_error").Call("bad input"))!;
        Assert.Multiple(() =>
        {
            Assert.That(e.PythonType, Is.EqualTo("ValueError"));
            Assert.That(e.PythonMessage, Is.EqualTo("bad input"));
            Assert.That(e.PythonTraceback, Does.Contain("raise_value_error"));
        });
        using var again = _fixture.GetAttr("pid").Call();
        Assert.That(again.AsInt64(), Is.GreaterThan(0));
        Assert.Throws<PythonErrorException>(() => _session.Import("no_such_module_xyz"));
        Assert.Throws<PythonErrorException>(() => _fixture.GetAttr("no_such_function"));
    }

    [Test]
    public void Strings_with_unpaired_surrogates_are_a_Python_error_naming_them_and_error_texts_keep_them_escaped()
    {
        // os.listdir and friends decode non-UTF-8 file names with surrogateescape; .NET's JSON reader refuses the result.
        var returned = Assert.Throws<PythonErrorException>(() => _fixture.GetAttr("undecodable_name").Call(false))!;
        Assert.That(returned.PythonMessage, Does.Contain("surrogate").And.Contain("caf\\udce9.txt"));
        var raised = Assert.Throws<PythonErrorException>(() => _fixture.GetAttr("undecodable_name").Call(true))!;
        Assert.That(raised.PythonType, Is.EqualTo("FileNotFoundError"));
        Assert.That(raised.PythonMessage, Does.Contain("caf\\udce9.txt"));
    }

    [Test]
    public void A_dotnet_array_becomes_a_torch_tensor_from_numpy_over_shared_memory_and_the_result_comes_back()
    {
        var data = new float[,] { { 1, 2, 3 }, { 4, 5, 6 } };
        using var described = _fixture.GetAttr("describe").Call(data);
        using var scaled = _fixture.GetAttr("scale").Call([data], new CallOptions { KeywordArguments = new Dictionary<string, object?> { ["factor"] = 3.0 } });
        Assert.Multiple(() =>
        {
            Assert.That(described["type"].AsString(), Is.EqualTo("torch.Tensor"));
            Assert.That(described["dtype"].AsString(), Is.EqualTo("torch.float32"));
            Assert.That(described["shape"].Items.Select(i => i.AsInt64()), Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(described["sum"].AsDouble(), Is.EqualTo(21.0));
            Assert.That(described["writeable"].AsBool(), Is.True, "np.frombuffer over the writable mapping");
            Assert.That(scaled.Kind, Is.EqualTo(PythonValueKind.Tensor));
            Assert.That(scaled.Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(scaled.AsReadOnlySpan<float>().ToArray(), Is.EqualTo(new float[] { 3, 6, 9, 12, 15, 18 }));
        });
    }

    [Test]
    public void A_0_d_tensor_argument_arrives_with_shape_empty()
    {
        using var described = _fixture.GetAttr("describe").Call(TensorArgument.Scalar(7L));
        Assert.Multiple(() =>
        {
            Assert.That(described["dtype"].AsString(), Is.EqualTo("torch.int64"));
            Assert.That(described["shape"].Items, Is.Empty);
            Assert.That(described["sum"].AsDouble(), Is.EqualTo(7));
        });
    }

    [TestCase("strided", new long[] { 4, 3 })]
    [TestCase("numpy", new long[] { 2, 3 })]
    [TestCase("big_endian", new long[] { 2, 3 })]
    public void Non_contiguous_tensors_and_numpy_arrays_come_back_in_C_order(string kind, long[] shape)
    {
        using var v = _fixture.GetAttr("make").Call(kind);
        Assert.That(v.Shape, Is.EqualTo(shape));
        if (kind == "strided")
            Assert.That(v.ToArray<float>(), Is.EqualTo(new float[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }));
        else
            Assert.That(v.ToArray<int>(), Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }));
    }

    [Test]
    public void Nested_results_keep_their_structure_and_every_tensor_its_dtype()
    {
        using var v = _fixture.GetAttr("make").Call("several");
        Assert.Multiple(() =>
        {
            Assert.That(v.Kind, Is.EqualTo(PythonValueKind.Sequence));
            Assert.That(v[0].ToArray<long>(), Is.EqualTo(new long[] { 0, 1, 2 }));
            Assert.That(v[1].AsString(), Is.EqualTo("label"));
            Assert.That(v[2][0].DType.Name, Is.EqualTo("float64"));
            Assert.That(v[2][0].ToArray<double>(), Is.EqualTo(new double[4]));
            Assert.That(v[2][1].AsDouble(), Is.EqualTo(2.5));
        });
    }

    [Test]
    public void Results_nested_deeper_than_the_protocol_carries_are_a_Python_error_and_the_worker_lives_on()
    {
        var pid = _session.WorkerProcessIds.Single();
        using (var deepest = _fixture.GetAttr("make").Call("nested", 32))
        {
            var inner = deepest;
            for (var i = 0; i < 32; i++)
                inner = inner[0];
            Assert.That(inner.AsInt64(), Is.EqualTo(7));
        }
        var e = Assert.Throws<PythonErrorException>(() => _fixture.GetAttr("make").Call("nested", 45))!;
        Assert.That(e.PythonMessage, Does.Contain("nested deeper than 32"));
        Assert.That(_session.WorkerProcessIds, Is.EqualTo(new[] { pid }), "a deep result is the caller's problem, not a protocol breach");
    }

    [Test]
    public void The_export_policy_runs_in_the_worker()
    {
        Assert.Throws<TensorDTypeNotSupportedByNumPyException>(() => _fixture.GetAttr("make").Call("bfloat16"));
        using var upcast = _fixture.GetAttr("make").Call(["bfloat16"], new CallOptions { Export = new ExportOptions { Upcast = true } });
        Assert.That(upcast.ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 1 }));
        using var detached = _fixture.GetAttr("make").Call("grad");
        Assert.That(detached.ToArray<float>(), Is.EqualTo(new float[] { 2, 2, 2 }));
        Assert.Throws<TensorRequiresGradException>(() => _fixture.GetAttr("make").Call(["grad"], new CallOptions { Export = new ExportOptions { Detach = false } }));
    }

    [Test]
    public void Grad_modes_apply_to_the_call()
    {
        using var f = _fixture.GetAttr("grad_enabled");
        using var plain = f.Call();
        using var noGrad = f.Call([], new CallOptions { GradMode = GradMode.NoGrad });
        using var inference = f.Call([], new CallOptions { GradMode = GradMode.InferenceMode });
        Assert.That(new[] { plain.AsBool(), noGrad.AsBool(), inference.AsBool() }, Is.EqualTo(new[] { true, false, false }));
    }

    [Test]
    public void Objects_stay_in_the_worker_and_references_pass_back_as_arguments()
    {
        using var counterType = _fixture.GetAttr("Counter");
        using var counter = counterType.Call(10);
        Assert.That(counter.Kind, Is.EqualTo(PythonValueKind.Object));
        using var add = counter.AsRef().GetAttr("add");
        using var first = add.Call(5);
        using var second = add.Call(1);
        using var echoed = _fixture.GetAttr("echo").Call(counter.AsRef());
        Assert.Multiple(() =>
        {
            Assert.That(counter.AsRef().PythonType, Does.EndWith("Counter"));
            Assert.That(second.AsInt64(), Is.EqualTo(16));
            Assert.That(echoed["args"][0].Kind, Is.EqualTo(PythonValueKind.Object));
        });
        using var other = Session();
        Assert.Throws<UnsupportedArgumentException>(() => other.Import("math").GetAttr("floor").Call(counter.AsRef()));
    }

    [Test]
    public void A_request_too_large_for_a_control_message_is_refused_without_stopping_the_worker()
    {
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var counter = fixture.GetAttr("Counter").Call(1);
        using var add = counter.AsRef().GetAttr("add");
        var pid = session.WorkerProcessIds.Single();
        var big = new float[2 << 20]; // a request region larger than the first one: announced by the refused request
        var e = Assert.Throws<WorkerProtocolException>(() => fixture.GetAttr("describe").Call(big, new string('x', 65 << 20)))!;
        Assert.That(e.Message, Does.Contain("limit for control messages"));
        big[0] = 3;
        using var described = fixture.GetAttr("describe").Call(big);
        using var added = add.Call(1);
        Assert.Multiple(() =>
        {
            Assert.That(session.WorkerProcessIds, Is.EqualTo(new[] { pid }), "nothing was sent: the worker and its objects live on");
            Assert.That(added.AsInt64(), Is.EqualTo(2));
            Assert.That(described["sum"].AsDouble(), Is.EqualTo(3.0), "the next request announces the region the refused one did not deliver");
        });
    }

    [Test]
    public void Objects_whose_values_were_never_disposed_are_released_in_the_worker_after_the_host_collects_them()
    {
        using var live = _fixture.GetAttr("live_counters");
        using var before = live.Call();
        MakeAndDropCounters(20);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using var _ = live.Call(); // carries the releases
        using var after = live.Call();
        Assert.That(after.AsInt64(), Is.EqualTo(before.AsInt64()), "a forgotten PythonValue must not pin its object in the worker forever");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void MakeAndDropCounters(int count)
    {
        using var counterType = _fixture.GetAttr("Counter");
        for (var i = 0; i < count; i++)
            _ = counterType.Call(i); // not disposed: the user forgot
    }

    [Test]
    public void An_input_Python_keeps_is_not_overwritten_by_the_next_call()
    {
        var ones = Enumerable.Repeat(1.0f, 1000).ToArray();
        using var index = _fixture.GetAttr("keep").Call(ones);
        var twos = Enumerable.Repeat(2.0f, 1000).ToArray();
        using var _ = _fixture.GetAttr("describe").Call(twos);
        using var sum = _fixture.GetAttr("kept_sum").Call(index.AsInt64() - 1);
        Assert.That(sum.AsDouble(), Is.EqualTo(1000.0), "the kept tensor must still see its own data");
    }

    [Test]
    public void An_input_Python_keeps_is_not_overwritten_by_the_next_call_even_when_the_call_raised()
    {
        var ones = Enumerable.Repeat(1.0f, 1000).ToArray();
        var e = Assert.Throws<PythonErrorException>(() => _fixture.GetAttr("keep_then_raise").Call(ones))!;
        var index = long.Parse(e.PythonMessage.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) - 1;
        var twos = Enumerable.Repeat(2.0f, 1000).ToArray();
        using var _ = _fixture.GetAttr("describe").Call(twos);
        using var sum = _fixture.GetAttr("kept_sum").Call(index);
        Assert.That(sum.AsDouble(), Is.EqualTo(1000.0), "the kept tensor must still see its own data");
    }

    [Test]
    public void Result_regions_the_worker_closes_during_a_call_that_raises_are_unmapped_by_the_host_too()
    {
        static int Mapped() => File.ReadAllLines("/proc/self/maps").Count(l => l.Contains("interop-result-", StringComparison.Ordinal));
        var before = Mapped();
        using var session = Session();
        using var fixture = session.LoadFile(Fixture);
        using var make = fixture.GetAttr("make");
        using var raise = fixture.GetAttr("raise_value_error");
        // Six live results of different sizes take six regions; released together, the worker pools four and closes two
        // while it runs the next call, which raises.
        var results = Enumerable.Range(0, 6).Select(i => make.Call("mebibytes", 1 << i)).ToList();
        Assert.That(Mapped() - before, Is.EqualTo(6));
        results.ForEach(r => r.Dispose());
        Assert.Throws<PythonErrorException>(() => raise.Call("after the release"));
        Assert.That(Mapped() - before, Is.EqualTo(4), "the host unmaps what the worker closed, even in an error reply");
    }

    [Test]
    public void Results_released_by_the_host_are_reused_and_unreleased_ones_stay_valid()
    {
        using var big1 = _fixture.GetAttr("make").Call("big");
        using var big2 = _fixture.GetAttr("make").Call("big");
        var a = big1.AsTensorData().Address;
        Assert.That(big2.AsTensorData().Address, Is.Not.EqualTo(a), "two live results cannot share a region");
        Assert.That(big1.AsReadOnlySpan<float>()[12345], Is.EqualTo(12345f));
        big1.Dispose();
        using var big3 = _fixture.GetAttr("make").Call("big");
        Assert.That(big3.AsReadOnlySpan<float>()[(1 << 22) - 1], Is.EqualTo((float)((1 << 22) - 1)));
        Assert.That(big2.AsReadOnlySpan<float>()[7], Is.EqualTo(7f));
    }

    /// <summary>The source of a file whose <c>slow()</c> takes 0.3 s and answers "VALUE:pid".</summary>
    private static string SlowSource(int value) =>
        string.Create(CultureInfo.InvariantCulture, $"import os, time\nVALUE = {value}\ndef slow():\n    time.sleep(0.3)\n    return '%d:%d' % (VALUE, os.getpid())\n");

    /// <summary>
    /// <c>slow()</c> of <paramref name="module"/> called twice at once, from two threads started together: with two
    /// workers the calls run on both (an idle worker is taken before a busy one, and each call lasts 0.3 s; thread-pool
    /// tasks could start too far apart). A call that raised answers "ExceptionType: first line of its message".
    /// </summary>
    private static string[] CallSlowOnBoth(PythonRef module)
    {
        using var slow = module.GetAttr("slow");
        var results = new string[2];
        using var start = new Barrier(2);
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                using var v = slow.Call();
                results[i] = v.AsString();
            }
            catch (Exception e)
            {
                results[i] = e.GetType().Name + ": " + e.Message.Split('\n')[0];
            }
        })).ToArray();
        foreach (var t in threads)
            t.Start();
        foreach (var t in threads)
            t.Join();
        return results;
    }

    [Test]
    public void Every_worker_runs_a_changed_file_again_at_its_next_load_and_keeps_the_loaded_module_until_then()
    {
        // Calls on a loaded file make no file-system call (the load's generation travels with them); a later LoadFile
        // has a newer generation, which makes each worker check the file again at its first call through it.
        var dir = Directory.CreateTempSubdirectory("interop-generation-").FullName;
        try
        {
            var file = Path.Combine(dir, "interop_generation_pool.py");
            File.WriteAllText(file, SlowSource(1));
            using var session = Session(workers: 2);
            static (string Value, string Pid) Split(string s) => (s.Split(':')[0], s.Split(':')[1]);

            using var first = session.LoadFile(file);
            var before = CallSlowOnBoth(first).Select(Split).ToArray();
            Assert.That(before.Select(b => b.Pid).Distinct().Count(), Is.EqualTo(2), "both workers loaded the file");
            File.WriteAllText(file, SlowSource(22));
            Assert.That(CallSlowOnBoth(first).Select(b => Split(b).Value), Is.All.EqualTo("1"), "calls keep the loaded module in every worker");
            using var second = session.LoadFile(file);
            var after = CallSlowOnBoth(second).Select(Split).ToArray();
            Assert.Multiple(() =>
            {
                Assert.That(after.Select(a => a.Pid).Distinct().Count(), Is.EqualTo(2));
                Assert.That(after.Select(a => a.Value), Is.All.EqualTo("22"), "the newer load ran the changed file in each worker");
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void A_worker_that_first_runs_a_loaded_file_after_it_changed_runs_the_file_as_it_is_then()
    {
        // docs/isolated.md: a worker runs a loaded file when it first meets the load (or a newer one), so a file changed
        // after LoadFile runs as loaded in the workers that had run it and as changed in one started later; a worker
        // that had run it keeps answering when the file is deleted.
        var dir = Directory.CreateTempSubdirectory("interop-generation-").FullName;
        try
        {
            var file = Path.Combine(dir, "interop_generation_late.py");
            File.WriteAllText(file, SlowSource(1));
            using var session = Session(workers: 2);
            using var first = session.LoadFile(file);
            string one;
            using (var slow1 = first.GetAttr("slow"))
            using (var v1 = slow1.Call())
                one = v1.AsString();
            File.WriteAllText(file, SlowSource(22));
            var changed = CallSlowOnBoth(first);
            Assert.Multiple(() =>
            {
                Assert.That(one, Does.StartWith("1:"));
                Assert.That(changed, Has.Member(one), "the worker that ran the file keeps the loaded module");
                Assert.That(changed.Single(c => c != one), Does.StartWith("22:"), "a worker started later runs the changed file");
                Assert.That(CallSlowOnBoth(first), Is.EquivalentTo(changed), "until the next LoadFile");
            });
            File.Delete(file);
            Assert.That(CallSlowOnBoth(first), Is.EquivalentTo(changed), "a deleted file: the workers that ran it keep its module");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void Unsupported_arguments_are_refused_before_anything_is_sent()
    {
        var e = Assert.Throws<UnsupportedArgumentException>(() => _fixture.GetAttr("echo").Call(new Uri("http://example.com")))!;
        Assert.That(e.Message, Does.Contain("argument 0"));
    }

    [Test]
    public void Auto_mode_is_in_process_without_TorchSharp_and_isolated_with_a_TorchSharp_libtorch_that_is_not_Pythons()
    {
        Assert.Multiple(() =>
        {
            Assert.That(SessionModeChooser.Choose(false, false, "2.6.0", null), Is.EqualTo(SessionMode.InProcess));
            Assert.That(SessionModeChooser.Choose(true, false, "2.6.0+debian", "2.10.0"), Is.EqualTo(SessionMode.Isolated));
            Assert.That(SessionModeChooser.Choose(true, false, "2.10.0", "2.10.0"), Is.EqualTo(SessionMode.Isolated), "same release but two copies");
            Assert.That(SessionModeChooser.Choose(true, true, "2.10.0+cpu", "2.10.0"), Is.EqualTo(SessionMode.InProcess), "the shared setup");
            Assert.That(SessionModeChooser.Choose(true, true, "2.6.0", "2.10.0"), Is.EqualTo(SessionMode.Isolated));
            Assert.That(SessionModeChooser.Choose(true, false, null, null), Is.EqualTo(SessionMode.Isolated));
            Assert.That(SessionModeChooser.Resolve(SessionMode.Isolated), Is.EqualTo(SessionMode.Isolated));
            Assert.That(SessionModeChooser.Resolve(SessionMode.InProcess), Is.EqualTo(SessionMode.InProcess));
        });
        // This test process neither references nor deploys TorchSharp.
        Assert.That(SessionModeChooser.Resolve(SessionMode.Auto), Is.EqualTo(SessionMode.InProcess));
        using var auto = PythonSession.Create(SessionMode.Auto);
        Assert.That(auto.Description, Does.Contain("in-process"));
    }
}
