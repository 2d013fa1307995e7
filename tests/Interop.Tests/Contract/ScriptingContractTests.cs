// The scripting part of the conversion contract (docs/scripting.md), run against both session kinds: every case
// runs once in-process and once isolated, so a difference between the kinds is a failing test.
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using Interop.Tests.Isolated;

namespace Interop.Tests.Contract;

/// <summary>A fixture parametrised over the session kinds (one session per fixture).</summary>
public abstract class SessionContractBase(SessionMode kind)
{
    protected SessionMode Kind { get; } = kind;

    protected PythonSession Session { get; private set; } = null!;

    [OneTimeSetUp]
    public void StartSession() => Session = Kind == SessionMode.InProcess ? PythonSession.InProcess() : PythonSession.Isolated(IsolatedTestSupport.Options());

    [OneTimeTearDown]
    public void StopSession() => Session.Dispose();

    protected static Dictionary<string, object?> Globals(params (string Name, object? Value)[] globals) =>
        globals.ToDictionary(g => g.Name, g => g.Value);

    protected bool HasTorch()
    {
        using var v = Session.Eval("__import__('importlib').util.find_spec('torch') is not None");
        return v.AsBool();
    }

    protected void RequireTorch()
    {
        if (!HasTorch())
            Assert.Ignore("PyTorch is not installed for the interpreter under test.");
    }
}

[TestFixture(SessionMode.InProcess)]
[TestFixture(SessionMode.Isolated)]
[Category("numpy")]
public class ScriptingContractTests(SessionMode kind) : SessionContractBase(kind)
{
    private static readonly CallOptions NumPy = new() { Arrays = ArrayConversion.NumPy };

    // ---- exec / eval ------------------------------------------------------------------------------------

    [Test]
    public void Exec_returns_the_globals_the_script_bound_and_not_its_inputs_or_modules()
    {
        using var result = Session.Exec("""
            import math
            total = float(xs.sum()) * scale
            label = f"{len(xs)} rows"
            def helper():
                return 1
            """, Globals(("xs", new double[] { 1, 2, 3 }), ("scale", 2.0)), NumPy);

        Assert.That(result.Kind, Is.EqualTo(PythonValueKind.Mapping));
        var names = result.Entries.Select(e => e.Key.AsString()).ToArray();
        Assert.That(names, Is.EquivalentTo(new[] { "total", "label", "helper" }));
        Assert.That(result["total"].AsDouble(), Is.EqualTo(12.0));
        Assert.That(result["label"].AsString(), Is.EqualTo("3 rows"));
        Assert.That(result["helper"].Kind, Is.EqualTo(PythonValueKind.Object));
        using var called = result["helper"].AsRef().Call();
        Assert.That(called.AsInt64(), Is.EqualTo(1));
    }

    [Test]
    public void Exec_reports_a_rebound_input()
    {
        using var result = Session.Exec("n = n + 1", Globals(("n", 41)));
        Assert.That(result["n"].AsInt64(), Is.EqualTo(42));
    }

    [Test]
    public void A_script_error_carries_its_type_line_and_traceback()
    {
        var e = Assert.Throws<PythonErrorException>(() => Session.Exec("x = 1\nraise ValueError('bad row ' + str(x))"))!;
        Assert.That(e.PythonType, Is.EqualTo("ValueError"));
        Assert.That(e.PythonMessage, Is.EqualTo("bad row 1"));
        Assert.That(e.PythonTraceback, Does.Contain("<script>").And.Contain("line 2"));
        Assert.That(e.PythonTraceback, Does.Not.Contain("calls.py").And.Not.Contain("worker.py"), "the traceback starts at the user's code");
        Assert.That(e.PythonTraceback, Does.Match(@"\(\d+ frames of interop_helpers left out\)"));
    }

    [Test]
    public void An_error_inside_the_helper_package_keeps_its_whole_traceback()
    {
        const string OnlyHelpers = "Traceback (most recent call last):\n  File \"/x/interop_helpers/calls.py\", line 3, in call\n    f()\n" +
                                   "  File \"/x/interop_helpers/torch_export.py\", line 9, in export\n    raise E\nE: refused";
        Assert.That(ArgumentHints.TrimHelperFrames(OnlyHelpers), Is.EqualTo(OnlyHelpers));
        const string Chained = "Traceback (most recent call last):\n  File \"/x/interop_helpers/calls.py\", line 3, in call\n    f()\n" +
                               "  File \"/home/u/a.py\", line 2, in f\n    g()\nKeyError: 'a'\n\nDuring handling of the above exception, another exception occurred:\n\n" +
                               "Traceback (most recent call last):\n  File \"/home/u/a.py\", line 4, in f\n    h()\nValueError: b";
        var trimmed = ArgumentHints.TrimHelperFrames(Chained);
        Assert.That(trimmed, Does.Not.Contain("calls.py").And.Contain("(1 frame of interop_helpers left out)"));
        Assert.That(trimmed, Does.Contain("a.py\", line 2").And.Contain("a.py\", line 4").And.Contain("During handling"));
    }

    [Test]
    public void A_syntax_error_is_a_python_error()
    {
        var e = Assert.Throws<PythonErrorException>(() => Session.Exec("def broken(:\n  pass"))!;
        Assert.That(e.PythonType, Is.EqualTo("SyntaxError"));
    }

    [Test]
    public void ExecFile_names_the_file_in_tracebacks_and_sees_its_globals()
    {
        var dir = Directory.CreateTempSubdirectory("interop-script-").FullName;
        try
        {
            var path = Path.Combine(dir, "analysis.py");
            File.WriteAllText(path, "mean = sum(values) / len(values)\nif mean > limit:\n    raise RuntimeError('mean too high')\n");
            using (var ok = Session.ExecFile(path, Globals(("values", new List<int> { 1, 2, 3 }), ("limit", 10))))
                Assert.That(ok["mean"].AsDouble(), Is.EqualTo(2.0));
            var e = Assert.Throws<PythonErrorException>(() => Session.ExecFile(path, Globals(("values", new List<int> { 20 }), ("limit", 10))))!;
            Assert.That(e.PythonTraceback, Does.Contain("analysis.py").And.Contain("line 3"));
            Assert.Throws<FileNotFoundException>(() => Session.ExecFile(Path.Combine(dir, "missing.py")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void Eval_returns_the_value_of_an_expression()
    {
        using var v = Session.Eval("a * b + len(s)", Globals(("a", 6), ("b", 7L), ("s", "abc")));
        Assert.That(v.AsInt64(), Is.EqualTo(45));
        Assert.Throws<PythonErrorException>(() => Session.Eval("x = 1"));
    }

    [Test]
    public void Strings_bytes_none_and_nested_containers_read_back_alike()
    {
        using var v = Session.Eval("[1, 2.5, 'x\u00e9', None, True, b'\\x00\\xffab', (1, [2]), {'k': {'n': None}}]");
        Assert.That(v.PythonType, Is.EqualTo("list"));
        Assert.That(v[0].AsInt64(), Is.EqualTo(1));
        Assert.That(v[1].AsDouble(), Is.EqualTo(2.5));
        Assert.That(v[2].AsString(), Is.EqualTo("x\u00e9"));
        Assert.That(v[3].IsNone, Is.True);
        Assert.That(v[4].AsBool(), Is.True);
        Assert.That(v[5].Kind, Is.EqualTo(PythonValueKind.Bytes));
        Assert.That(v[5].AsBytes(), Is.EqualTo(new byte[] { 0, 255, (byte)'a', (byte)'b' }));
        Assert.That(v[6].PythonType, Is.EqualTo("tuple"));
        Assert.That(v[6][1][0].AsInt64(), Is.EqualTo(2));
        Assert.That(v[7]["k"]["n"].IsNone, Is.True);
    }

    [Test]
    public void Dicts_with_keys_that_are_not_strings_read_back_with_typed_keys()
    {
        using var v = Session.Eval("{1: 'one', (2, 'b'): [2], None: 3.5, 'k': {7: True}}");
        Assert.That(v.Kind, Is.EqualTo(PythonValueKind.Mapping));
        var entries = v.Entries;
        Assert.That(entries[0].Key.AsInt64(), Is.EqualTo(1));
        Assert.That(entries[0].Value.AsString(), Is.EqualTo("one"));
        Assert.That(entries[1].Key.PythonType, Is.EqualTo("tuple"));
        Assert.That(entries[1].Key[1].AsString(), Is.EqualTo("b"));
        Assert.That(entries[2].Key.IsNone, Is.True);
        Assert.That(v["k"].Entries[0].Key.AsInt64(), Is.EqualTo(7));
        Assert.That(v["k"].Entries[0].Value.AsBool(), Is.True);
    }

    // ---- attributes --------------------------------------------------------------------------------------

    [Test]
    public void Attributes_are_read_and_set_as_values()
    {
        using var ns = Session.Eval("__import__('types').SimpleNamespace(training=True, n=3, name='m')");
        var obj = ns.AsRef();
        using (var training = obj.GetAttrValue("training"))
            Assert.That(training.AsBool(), Is.True);
        obj.SetAttr("n", 5);
        obj.SetAttr("weights", new float[] { 1, 2 });
        using (var n = obj.GetAttrValue("n"))
            Assert.That(n.AsInt64(), Is.EqualTo(5));
        using (var w = obj.GetAttrValue("weights"))
            Assert.That(w.ToArray<float>(), Is.EqualTo(new float[] { 1, 2 }));
        var e = Assert.Throws<PythonErrorException>(() => obj.GetAttrValue("missing"))!;
        Assert.That(e.PythonType, Is.EqualTo("AttributeError"));
    }

    // ---- results and references as arguments -------------------------------------------------------------

    [Test]
    public void Results_pass_back_as_arguments_unchanged()
    {
        const string Literal = "[1, 2.5, 'x', None, True, b'ab', (1, 2), {'k': [3]}]";
        using var v = Session.Eval(Literal);
        using var same = Session.Eval($"v == {Literal} and type(v[6]) is tuple and type(v[5]) is bytes", Globals(("v", v)));
        Assert.That(same.AsBool(), Is.True);
    }

    [Test]
    public void An_array_result_passes_back_as_an_array_of_the_same_dtype_and_shape()
    {
        using var a = Session.Eval("__import__('numpy').arange(6, dtype='float32').reshape(2, 3)");
        using var check = Session.Eval("(type(a).__name__, str(a.dtype), a.shape, float(a.sum()))", Globals(("a", a)), NumPy);
        Assert.That(check[0].AsString(), Is.EqualTo("ndarray"));
        Assert.That(check[1].AsString(), Is.EqualTo("float32"));
        Assert.That(check[2].Items.Select(d => d.AsInt64()), Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(check[3].AsDouble(), Is.EqualTo(15.0));
    }

    [Test]
    public void Object_results_and_refs_pass_back_as_the_same_object()
    {
        using var math = Session.Import("math");
        using var root = Session.Eval("m.sqrt(16.0)", Globals(("m", math)));
        Assert.That(root.AsDouble(), Is.EqualTo(4.0));
        using var fraction = Session.Eval("__import__('fractions').Fraction(3, 4)");
        Assert.That(fraction.Kind, Is.EqualTo(PythonValueKind.Object));
        Assert.That(fraction.PythonType, Is.EqualTo("fractions.Fraction"));
        using var same = Session.Eval("(f.numerator, f is g)", Globals(("f", fraction), ("g", fraction.AsRef())));
        Assert.That(same[0].AsInt64(), Is.EqualTo(3));
        Assert.That(same[1].AsBool(), Is.True);
    }

    [Test]
    public void A_disposed_result_cannot_be_passed()
    {
        var v = Session.Eval("[1]");
        v.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Session.Eval("v", Globals(("v", v))));
    }

    [Test]
    public void Tuples_enumerables_and_bytes_arguments_arrive_alike()
    {
        using var v = Session.Eval("[type(t).__name__, list(t), type(e).__name__, e, type(b).__name__, b]",
            Globals(("t", (1, "a")), ("e", Enumerable.Range(0, 3)), ("b", new ReadOnlyMemory<byte>([1, 2]))));
        Assert.That(v[0].AsString(), Is.EqualTo("tuple"));
        Assert.That(v[1][1].AsString(), Is.EqualTo("a"));
        Assert.That(v[2].AsString(), Is.EqualTo("list"));
        Assert.That(v[3].Items.Select(i => i.AsInt64()), Is.EqualTo(new long[] { 0, 1, 2 }));
        Assert.That(v[4].AsString(), Is.EqualTo("bytes"));
        Assert.That(v[5].AsBytes(), Is.EqualTo(new byte[] { 1, 2 }));
    }

    [Test]
    public void An_in_process_numpy_array_arrives_as_a_numpy_array_in_both_kinds()
    {
        using var array = Interop.NumPy.NDArray.Evaluate("__import__('numpy').arange(6, dtype='int16').reshape(3, 2)[::2]");
        using var v = Session.Eval("(type(a).__name__, str(a.dtype), list(a.shape), a.tolist())", Globals(("a", array)));
        Assert.That(v[0].AsString(), Is.EqualTo("ndarray"));
        Assert.That(v[1].AsString(), Is.EqualTo("int16"));
        Assert.That(v[2].Items.Select(d => d.AsInt64()), Is.EqualTo(new long[] { 2, 2 }));
        Assert.That(v[3][1][1].AsInt64(), Is.EqualTo(5));
    }

    // ---- scalars and typed copies ------------------------------------------------------------------------

    [Test]
    public void Zero_d_arrays_read_as_scalars()
    {
        using var f = Session.Eval("__import__('numpy').array(2.5, dtype='float32')");
        Assert.That(f.Kind, Is.EqualTo(PythonValueKind.Tensor));
        Assert.That(f.AsDouble(), Is.EqualTo(2.5));
        Assert.That(f.Item<float>(), Is.EqualTo(2.5f));
        Assert.Throws<ElementTypeMismatchException>(() => f.Item<double>());
        Assert.Throws<PythonValueKindException>(() => f.AsInt64());

        using var i = Session.Eval("__import__('numpy').array([[7]], dtype='int64')");
        Assert.That(i.AsInt64(), Is.EqualTo(7));
        Assert.That(i.AsDouble(), Is.EqualTo(7.0));

        using var many = Session.Eval("__import__('numpy').zeros(2)");
        var e = Assert.Throws<PythonValueKindException>(() => many.AsDouble())!;
        Assert.That(e.Message, Does.Contain("2 elements"));

        using var number = Session.Eval("3");
        Assert.That(number.Item<int>(), Is.EqualTo(3));
    }

    [Test]
    public void Typed_multidimensional_copies_need_no_cast()
    {
        using var v = Session.Eval("__import__('numpy').arange(24, dtype='float32').reshape(2, 3, 4)");
        float[,,] a3 = v.ToArray3D<float>();
        Assert.That(a3[1, 2, 3], Is.EqualTo(23f));
        Assert.That(a3.GetLength(1), Is.EqualTo(3));
        Assert.Throws<LayoutException>(() => v.ToArray2D<float>());

        using var t = Session.Eval("__import__('numpy').arange(6).reshape(2, 3).T");
        long[,] a2 = t.ToArray2D<long>();
        Assert.That(a2[2, 1], Is.EqualTo(5L), "a transposed (non-contiguous) array copies in C order of its shape");
    }

    // ---- array conversion and dtype hints -----------------------------------------------------------------

    [Test]
    public void Arrays_become_numpy_arrays_when_asked()
    {
        using var v = Session.Eval("type(x).__module__ + '.' + type(x).__name__", Globals(("x", new double[] { 1, 2 })), NumPy);
        Assert.That(v.AsString(), Is.EqualTo("numpy.ndarray"));
    }

    [Test]
    public void Arrays_by_default_are_tensors_with_pytorch_and_numpy_arrays_without()
    {
        using var v = Session.Eval("type(x).__module__", Globals(("x", new int[] { 1, 2 })));
        Assert.That(v.AsString(), Is.EqualTo(HasTorch() ? "torch" : "numpy"));
    }

    [Test]
    [Category("torch")]
    public void Arrays_become_tensors_when_asked()
    {
        RequireTorch();
        using var v = Session.Eval("str(x.dtype)", Globals(("x", new float[,] { { 1 } })), new CallOptions { Arrays = ArrayConversion.Torch });
        Assert.That(v.AsString(), Is.EqualTo("torch.float32"));
    }

    [Test]
    [Category("torch")]
    public void A_dtype_error_names_the_dotnet_type_that_made_the_dtype()
    {
        RequireTorch();
        var e = Assert.Throws<PythonErrorException>(() => Session.Eval("__import__('torch').nn.Linear(2, 1)(x)", Globals(("x", new double[,] { { 1, 2 } }))))!;
        Assert.That(e.Hint, Does.Contain("global 'x'").And.Contain("Double[,]").And.Contain("float64").And.Contain("float[]"));
        Assert.That(e.Message, Does.Contain("Hint:"));
    }

    [Test]
    public void Errors_that_are_not_about_dtypes_get_no_hint()
    {
        var e = Assert.Throws<PythonErrorException>(() => Session.Eval("1 / 0", Globals(("x", new double[] { 1 }))))!;
        Assert.That(e.Hint, Is.Null);
    }

    [Test]
    [Category("torch")]
    public void A_zero_d_tensor_loss_reads_as_a_double_and_model_attributes_as_values()
    {
        RequireTorch();
        using var result = Session.Exec("""
            import torch
            torch.manual_seed(0)
            model = torch.nn.Linear(2, 1)
            loss = torch.nn.functional.mse_loss(model(x), torch.zeros(1, 1))
            expected = float(loss)
            """, Globals(("x", new float[,] { { 1, 2 } })));
        Assert.That(result["loss"].AsDouble(), Is.EqualTo(result["expected"].AsDouble()));
        Assert.That(result["loss"].Item<float>(), Is.EqualTo((float)result["expected"].AsDouble()));
        var model = result["model"].AsRef();
        using (var training = model.GetAttrValue("training"))
            Assert.That(training.AsBool(), Is.True);
        using (model.GetAttr("eval").Call()) { }
        using (var training = model.GetAttrValue("training"))
            Assert.That(training.AsBool(), Is.False);
    }

    // ---- output ------------------------------------------------------------------------------------------

    [Test]
    public void Print_and_stderr_output_go_to_the_session_output_writer()
    {
        var writer = new StringWriter();
        Session.Output = writer;
        try
        {
            using (Session.Exec("import sys\nprint('hello', 42)\nprint('warned', file=sys.stderr)\nsys.stdout.flush()"))
            {
            }
            using (Session.Eval("1")) // the isolated worker's lines arrive asynchronously: a later call lets them through
            {
            }
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (!writer.ToString().Contains("warned", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
                Thread.Sleep(20);
        }
        finally
        {
            Session.Output = null;
        }
        var text = writer.ToString();
        Assert.That(text, Does.Contain("hello 42").And.Contain("warned"));
        if (Kind == SessionMode.Isolated)
            Assert.That(text, Does.Match(@"\[worker \d+\] hello 42"));
    }

    [Test]
    public void Without_an_output_writer_print_does_not_reach_a_former_writer()
    {
        var writer = new StringWriter();
        Session.Output = writer;
        Session.Output = null;
        using (Session.Exec("print('to the console')"))
        {
        }
        Thread.Sleep(100);
        Assert.That(writer.ToString(), Is.Empty);
    }

    // ---- timeouts and cancellation --------------------------------------------------------------------------

    private const string BusyLoop = """
        while True:
            try:
                while True:
                    pass
            except Exception:
                pass  # the interrupt is a BaseException: this does not swallow it
        """;

    [Test]
    public void A_timeout_stops_running_python_code_and_the_session_stays_usable()
    {
        var e = Assert.Throws<WorkerTimeoutException>(() => Session.Exec(BusyLoop, null, new CallOptions { Timeout = TimeSpan.FromMilliseconds(300) }))!;
        Assert.That(e.InProcess, Is.EqualTo(Kind == SessionMode.InProcess));
        using var after = Session.Eval("1 + 1");
        Assert.That(after.AsInt64(), Is.EqualTo(2));
    }

    [Test]
    public void Cancellation_stops_running_python_code_and_the_session_stays_usable()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var task = Session.ExecAsync(BusyLoop, null, null, cts.Token);
        Assert.That(async () => await task, Throws.InstanceOf<OperationCanceledException>());
        using var after = Session.Eval("2 + 2");
        Assert.That(after.AsInt64(), Is.EqualTo(4));
    }

    [Test]
    public void A_call_that_finishes_in_time_is_not_interrupted_later()
    {
        // A timeout a loaded CI machine cannot miss for a trivial call (200 ms once did not hold there), and a wait past it.
        using (var quick = Session.Eval("sum(range(10))", null, new CallOptions { Timeout = TimeSpan.FromSeconds(2) }))
            Assert.That(quick.AsInt64(), Is.EqualTo(45));
        Thread.Sleep(2500); // past the first call's timeout: its timer must be gone
        using var later = Session.Exec("total = 0\nfor i in range(200000):\n    total += i");
        Assert.That(later["total"].AsInt64(), Is.EqualTo(199999L * 200000 / 2));
    }
}
