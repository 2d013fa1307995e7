using Interop.Errors;
using Interop.Sessions;
using Interop.Tests.Isolated;

namespace Interop.Tests.Contract;

/// <summary>The kinds of session the contract suite runs against.</summary>
public enum SessionKind
{
    /// <summary><see cref="PythonSession.InProcess()"/>.</summary>
    InProcess,
    /// <summary><see cref="PythonSession.Isolated"/>.</summary>
    Isolated,
}

/// <summary>
/// The conversion contract: every case runs against every kind of session, and each must accept or refuse a value
/// the same way (same result, or the same exception type naming the same position). To add a case, add a Python
/// helper to <see cref="Helpers"/> if needed and a test that uses only <see cref="Call"/>; never branch on
/// <see cref="_kind"/>, or the suite stops proving that the kinds agree.
/// </summary>
[TestFixture(SessionKind.InProcess)]
[TestFixture(SessionKind.Isolated)]
[Category("numpy")]
[Category("contract")]
public class ConversionContractTests
{
    private const string Helpers = """
        import numpy as np

        def echo(x):
            return x

        def depth(x):
            d = 0
            while isinstance(x, (list, tuple, dict)) and len(x):
                x = x[0] if not isinstance(x, dict) else next(iter(x.values()))
                d += 1
            return d

        def type_name(x):
            return type(x).__name__

        def is_uint64_max(x):
            return type(x) is int and x == 2 ** 64 - 1

        def text_points(x):
            return [ord(c) for c in x]

        def ndim(x):
            return x.dim() if hasattr(x, "dim") else x.ndim

        def nested(levels):
            value = 1
            for _ in range(levels):
                value = [value]
            return value

        def self_referencing():
            a = []
            a.append(a)
            return a

        def lone_surrogate():
            return "\ud800x"

        def int_keys():
            return {1: "a", 2: "b"}

        def array_of_rank(n):
            return np.zeros((1,) * n, dtype=np.float32)
        """;

    private readonly SessionKind _kind;
    private string _directory = "";
    private PythonSession _session = null!;
    private PythonRef _helpers = null!;

    public ConversionContractTests(SessionKind kind) => _kind = kind;

    [OneTimeSetUp]
    public void Open()
    {
        _directory = Directory.CreateTempSubdirectory("interop-contract-").FullName;
        var path = Path.Combine(_directory, "contract_helpers.py");
        File.WriteAllText(path, Helpers);
        _session = _kind == SessionKind.InProcess ? PythonSession.InProcess() : PythonSession.Isolated(IsolatedTestSupport.Options());
        _helpers = _session.LoadFile(path);
    }

    [OneTimeTearDown]
    public void Close()
    {
        _helpers?.Dispose();
        _session?.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private PythonValue Call(string function, params object?[] args)
    {
        using var f = _helpers.GetAttr(function);
        return f.Call(args);
    }

    private UnsupportedArgumentException Refused(string function, params object?[] args) =>
        Assert.Throws<UnsupportedArgumentException>(() => Call(function, args).Dispose())!;

    private PythonErrorException Raised(string function, params object?[] args) =>
        Assert.Throws<PythonErrorException>(() => Call(function, args).Dispose())!;

    private static object Nest(int levels)
    {
        object value = 1;
        for (var i = 0; i < levels; i++)
            value = new object?[] { value };
        return value;
    }

    // ---- nesting: one limit, cycles refused, never a stack overflow ------------------------------------

    [Test]
    public void A_self_referencing_list_argument_is_refused_as_a_cycle()
    {
        var cyclic = new object?[1];
        cyclic[0] = cyclic;
        var e = Refused("echo", (object)cyclic);
        Assert.That(e.Message, Does.Contain("argument 0[0]").And.Contain("cycle"));
    }

    [Test]
    public void A_self_referencing_dictionary_argument_is_refused_as_a_cycle()
    {
        var cyclic = new Dictionary<string, object?>();
        cyclic["me"] = new List<object?> { cyclic };
        var e = Refused("echo", cyclic);
        Assert.That(e.Message, Does.Contain("argument 0['me'][0]").And.Contain("cycle"));
    }

    [Test]
    public void The_same_list_twice_side_by_side_is_not_a_cycle()
    {
        var shared = new object?[] { 1, 2 };
        using var value = Call("echo", (object)new object?[] { shared, shared });
        Assert.That(value.Items.Select(i => i.Items.Count), Is.EqualTo(new[] { 2, 2 }));
    }

    [Test]
    public void Arguments_nested_up_to_the_limit_pass_and_deeper_ones_are_refused()
    {
        using (var value = Call("depth", Nest(ConversionLimits.MaxDepth)))
            Assert.That(value.AsInt64(), Is.EqualTo(ConversionLimits.MaxDepth));
        var e = Refused("depth", Nest(ConversionLimits.MaxDepth + 1));
        Assert.That(e.Message, Does.Contain($"at most {ConversionLimits.MaxDepth} deep"));
        Refused("depth", Nest(40));
        Refused("depth", Nest(100_000)); // far beyond any stack: still a typed refusal
    }

    [Test]
    public void Results_nested_up_to_the_limit_arrive_and_deeper_ones_raise_a_ValueError()
    {
        using (var value = Call("nested", ConversionLimits.MaxDepth))
        {
            var item = value;
            for (var i = 0; i < ConversionLimits.MaxDepth; i++)
                item = item[0];
            Assert.That(item.AsInt64(), Is.EqualTo(1));
        }
        Assert.That(Raised("nested", ConversionLimits.MaxDepth + 1).PythonType, Is.EqualTo("ValueError"));
        Assert.That(Raised("nested", 5000).PythonType, Is.EqualTo("ValueError"));
    }

    [Test]
    public void A_self_referencing_result_raises_a_ValueError()
    {
        var e = Raised("self_referencing");
        Assert.That(e.PythonType, Is.EqualTo("ValueError"));
        Assert.That(e.PythonMessage, Does.Contain("contains itself"));
    }

    // ---- strings ---------------------------------------------------------------------------------------

    // Built in code: an attribute's string cannot hold a lone surrogate (metadata stores it as UTF-8).
    [TestCase("", 0xD800, "x")]
    [TestCase("ab", 0xDC00, "")]
    [TestCase("a", 0xD83D, "")]
    public void A_string_with_a_lone_surrogate_is_refused_naming_where(string before, int surrogate, string after)
    {
        var text = before + (char)surrogate + after;
        var index = before.Length;
        var e = Refused("text_points", text);
        Assert.That(e.Message, Does.Contain("argument 0").And.Contain($"index {index}").And.Contain("surrogate"));
        e = Refused("echo", new Dictionary<string, object?> { [text] = 1 });
        Assert.That(e.Message, Does.Contain("dictionary key"));
    }

    [Test]
    public void Keyword_arguments_follow_the_same_rules_and_name_their_position()
    {
        using var f = _helpers.GetAttr("echo");
        PythonValue CallWith(string name, object? value) =>
            f.Call([], new CallOptions { KeywordArguments = new Dictionary<string, object?> { [name] = value } });
        var e = Assert.Throws<UnsupportedArgumentException>(() => CallWith("x" + (char)0xD800, 1).Dispose())!;
        Assert.That(e.Message, Does.Contain("(its name)").And.Contain("surrogate"));
        var cyclic = new List<object?>();
        cyclic.Add(cyclic);
        e = Assert.Throws<UnsupportedArgumentException>(() => CallWith("x", cyclic).Dispose())!;
        Assert.That(e.Message, Does.Contain("keyword argument 'x'[0]").And.Contain("cycle"));
    }

    [Test]
    public void A_surrogate_pair_is_text_and_arrives_unchanged()
    {
        using var value = Call("text_points", "a\U0001F600b");
        Assert.That(value.Items.Select(i => i.AsInt64()), Is.EqualTo(new long[] { 'a', 0x1F600, 'b' }));
        using var echoed = Call("echo", "a\U0001F600b");
        Assert.That(echoed.AsString(), Is.EqualTo("a\U0001F600b"));
    }

    [Test]
    public void A_result_string_with_a_lone_surrogate_raises_a_ValueError()
    {
        var e = Raised("lone_surrogate");
        Assert.That(e.PythonType, Is.EqualTo("ValueError"));
        Assert.That(e.PythonMessage, Does.Contain("surrogate"));
    }

    // ---- integers --------------------------------------------------------------------------------------

    [Test]
    public void ULong_max_is_a_Python_int()
    {
        using var value = Call("is_uint64_max", ulong.MaxValue);
        Assert.That(value.AsBool(), Is.True);
    }

    [TestCase(long.MinValue)]
    [TestCase(long.MaxValue)]
    [TestCase(0L)]
    public void Int64_values_round_trip(long n)
    {
        using var value = Call("echo", n);
        Assert.That(value.AsInt64(), Is.EqualTo(n));
    }

    // ---- tensors ---------------------------------------------------------------------------------------

    [Test]
    public void Tensor_arguments_up_to_the_rank_limit_pass_and_more_dimensions_are_refused()
    {
        var ok = TensorArgument.Create<float>(new float[] { 1 }, Enumerable.Repeat(1L, ConversionLimits.MaxRank).ToArray());
        using (var value = Call("ndim", ok))
            Assert.That(value.AsInt64(), Is.EqualTo(ConversionLimits.MaxRank));
        var tooMany = TensorArgument.Create<float>(new float[] { 1 }, Enumerable.Repeat(1L, ConversionLimits.MaxRank + 1).ToArray());
        var e = Refused("ndim", tooMany);
        Assert.That(e.Message, Does.Contain("argument 0").And.Contain($"{ConversionLimits.MaxRank + 1} dimensions"));
        Refused("echo", (object)new object?[] { tooMany });
    }

    [Test]
    public void Result_arrays_of_more_dimensions_than_the_limit_raise_a_ValueError()
    {
        if (!TestPython.Installation.NumPyVersion!.StartsWith('2'))
            Assert.Ignore("NumPy 1.x cannot make an array of more than 32 dimensions, so such a result cannot exist");
        using (var value = Call("array_of_rank", ConversionLimits.MaxRank))
            Assert.That(value.Shape, Has.Length.EqualTo(ConversionLimits.MaxRank));
        Assert.That(Raised("array_of_rank", ConversionLimits.MaxRank + 1).PythonType, Is.EqualTo("ValueError"));
    }

    // ---- containers ------------------------------------------------------------------------------------

    [Test]
    public void A_value_tuple_is_a_Python_tuple()
    {
        using var value = Call("type_name", (1, "a"));
        Assert.That(value.AsString(), Is.EqualTo("tuple"));
    }

    [Test]
    public void Any_enumerable_is_a_Python_list()
    {
        using var value = Call("echo", new HashSet<int> { 7 });
        Assert.That(value.PythonType, Is.EqualTo("list"));
        Assert.That(value[0].AsInt64(), Is.EqualTo(7));
    }

    [Test]
    public void A_multidimensional_array_of_objects_is_refused()
    {
        var e = Refused("echo", new object?[,] { { 1, 2 } });
        Assert.That(e.Message, Does.Contain("argument 0"));
    }

    [Test]
    public void A_dictionary_key_that_is_not_a_string_is_refused()
    {
        var e = Refused("echo", new Dictionary<int, int> { [1] = 2 });
        Assert.That(e.Message, Does.Contain("dictionary key"));
    }

    [Test]
    public void A_result_dict_with_keys_other_than_strings_is_a_mapping_with_typed_keys()
    {
        using var value = Call("int_keys");
        Assert.That(value.Kind, Is.EqualTo(PythonValueKind.Mapping));
        Assert.That(value.Entries.Select(e => e.Key.Kind), Has.All.EqualTo(PythonValueKind.Int));
    }

    // ---- the limits are the same numbers on both sides of the boundary ----------------------------------

    [Test]
    public void The_Python_helpers_use_the_same_limits()
    {
        var (code, output, _) = TestPython.Run(TestPython.Executable,
            ["-c", "import sys; sys.path.insert(0, sys.argv[1]); from interop_helpers import calls, protocol; " +
                   "print(calls.MAX_DEPTH, calls.MAX_RANK, protocol.MAX_DEPTH, protocol.MAX_RANK)",
             Path.Combine(TestPython.RepositoryRoot, "python")], TimeSpan.FromSeconds(60));
        Assert.That(code, Is.Zero, output);
        Assert.That(output.Trim(), Is.EqualTo($"{ConversionLimits.MaxDepth} {ConversionLimits.MaxRank} {ConversionLimits.MaxDepth} {ConversionLimits.MaxRank}"));
    }
}
