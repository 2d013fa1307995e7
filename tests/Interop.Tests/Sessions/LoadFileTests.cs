using Interop.Embedding;
using Interop.Errors;
using Interop.Sessions;
using Interop.Tests.Isolated;

namespace Interop.Tests.Sessions;

/// <summary>LoadFile and search paths, the same in both session kinds: sibling imports, module names, reuse without growth.</summary>
[TestFixture("in-process")]
[TestFixture("isolated")]
[Category("embedding")]
public class LoadFileTests(string kind)
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("interop-loadfile-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private PythonSession Session(params string[] searchPaths)
    {
        var python = new PythonOptions { PythonExecutable = TestPython.Executable, AdditionalPaths = searchPaths };
        return kind == "isolated"
            ? PythonSession.Isolated(IsolatedTestSupport.Options() with { Python = python })
            : PythonSession.InProcess(python);
    }

    // Unique module names per test and kind: the in-process interpreter is shared by the whole test run.
    private string Unique(string stem) => $"{stem}_{kind.Replace("-", "", StringComparison.Ordinal)}_{Path.GetFileName(_dir).Replace("-", "_", StringComparison.Ordinal)}";

    private static long Call(PythonRef module, string function, params object?[] args)
    {
        using var f = module.GetAttr(function);
        using var v = f.Call(args);
        return v.AsInt64();
    }

    [Test]
    public void A_loaded_file_imports_its_sibling_modules()
    {
        var sibling = Unique("sibling");
        File.WriteAllText(Path.Combine(_dir, sibling + ".py"), "def twice(x):\n    return 2 * x\n");
        var model = Path.Combine(_dir, Unique("model") + ".py");
        File.WriteAllText(model, $"import {sibling}\ndef f(x):\n    return {sibling}.twice(x)\n");
        using var session = Session();
        using var module = session.LoadFile(model);
        Assert.That(Call(module, "f", 21), Is.EqualTo(42));
    }

    [Test]
    public void The_module_is_named_after_the_file_in_errors()
    {
        var name = Unique("named");
        var file = Path.Combine(_dir, name + ".py");
        File.WriteAllText(file, "def fail():\n    raise ValueError('raised in ' + __name__)\n");
        using var session = Session();
        using var module = session.LoadFile(file);
        using var fail = module.GetAttr("fail");
        var ex = Assert.Throws<PythonErrorException>(() => fail.Call().Dispose());
        Assert.Multiple(() =>
        {
            Assert.That(ex!.PythonMessage, Is.EqualTo("raised in " + name));
            Assert.That(ex.PythonTraceback, Does.Contain(file));
        });
    }

    [Test]
    public void Loading_the_same_path_again_reuses_the_module_and_sys_modules_does_not_grow()
    {
        var probe = Path.Combine(_dir, Unique("probe") + ".py");
        File.WriteAllText(probe, "import sys\nruns = 0\ndef modules():\n    return len(sys.modules)\ndef count():\n    return runs\n");
        var model = Path.Combine(_dir, Unique("again") + ".py");
        File.WriteAllText(model, $"import {Path.GetFileNameWithoutExtension(probe)} as p\np.runs += 1\ndef runs():\n    return p.runs\n");
        using var session = Session();
        using var p = session.LoadFile(probe);
        var first = session.LoadFile(model);
        var before = Call(p, "modules");
        for (var i = 0; i < 20; i++)
        {
            using var again = session.LoadFile(model);
            Assert.That(Call(again, "runs"), Is.EqualTo(1), "the file ran once while a reference to its module is alive");
        }
        Assert.That(Call(p, "modules"), Is.EqualTo(before), "20 more loads added no module");
        first.Dispose(); // the last reference: the module leaves sys.modules, so a later load runs the file again
        using var later = session.LoadFile(model);
        if (kind == "in-process") // a worker keeps one module per path for its lifetime (docs/isolated.md)
            Assert.That(Call(later, "runs"), Is.EqualTo(2), "after the last reference went, loading ran the file again");
    }

    [Test]
    public void A_file_changed_after_loading_runs_again_at_the_next_load_and_not_at_a_call()
    {
        var model = Path.Combine(_dir, Unique("edited") + ".py");
        File.WriteAllText(model, "VALUE = 1\ndef value():\n    return VALUE\n");
        using var session = Session();
        using var first = session.LoadFile(model);
        Assert.That(Call(first, "value"), Is.EqualTo(1));
        File.WriteAllText(model, "VALUE = 22\ndef value():\n    return VALUE\n"); // another size: changed even within the clock's resolution
        Assert.That(Call(first, "value"), Is.EqualTo(1), "a call runs the module that was loaded; the file is not read again");
        using var second = session.LoadFile(model);
        Assert.That(Call(second, "value"), Is.EqualTo(22), "loading the changed file ran it again");
    }

    [Test]
    public void A_file_changed_after_loading_is_not_run_again_by_calls_of_any_argument_kind()
    {
        // Calls the isolated session encodes as JSON (a PythonValue, a string) and then sends as a binary frame or as
        // JSON: every one of them carries the load's generation, so none of them reruns the changed file.
        var model = Path.Combine(_dir, Unique("edited_args") + ".py");
        File.WriteAllText(model, "VALUE = 1\ndef value(*args):\n    return VALUE\n");
        using var session = Session();
        using var first = session.LoadFile(model);
        Assert.That(Call(first, "value"), Is.EqualTo(1));
        File.WriteAllText(model, "VALUE = 22\ndef value(*args):\n    return VALUE\n");
        using var scalar = PythonValue.FromInt64(5);
        Assert.Multiple(() =>
        {
            Assert.That(Call(first, "value", scalar), Is.EqualTo(1), "a PythonValue argument (JSON encoder, binary frame)");
            Assert.That(Call(first, "value", "text"), Is.EqualTo(1), "a string argument (a JSON frame)");
            Assert.That(Call(first, "value", 3), Is.EqualTo(1), "an int argument (a direct binary frame)");
        });
    }

    [Test]
    public void A_load_of_a_changed_file_that_raises_leaves_the_earlier_load_working()
    {
        var model = Path.Combine(_dir, Unique("broken_later") + ".py");
        File.WriteAllText(model, "VALUE = 1\ndef value():\n    return VALUE\n");
        using var session = Session();
        using var first = session.LoadFile(model);
        Assert.That(Call(first, "value"), Is.EqualTo(1));
        File.WriteAllText(model, "raise RuntimeError('broken on purpose')\n");
        Assert.That(() => session.LoadFile(model), Throws.InstanceOf<PythonErrorException>().With.Message.Contains("broken on purpose"));
        Assert.That(Call(first, "value"), Is.EqualTo(1), "the failed load left the loaded module to the earlier reference");
        Assert.That(Call(first, "value"), Is.EqualTo(1));
    }

    [Test]
    public void A_search_path_makes_its_modules_importable()
    {
        var extra = Directory.CreateDirectory(Path.Combine(_dir, "extra")).FullName;
        var name = Unique("on_search_path");
        File.WriteAllText(Path.Combine(extra, name + ".py"), "def value():\n    return 7\n");
        using var session = Session(extra);
        using var module = session.Import(name);
        Assert.That(Call(module, "value"), Is.EqualTo(7));
    }

    [Test]
    public void A_search_path_that_does_not_exist_is_an_error_not_silence()
    {
        var missing = Path.Combine(_dir, "no-such-folder");
        var ex = Assert.Throws<DirectoryNotFoundException>(() => Session(missing).Dispose());
        Assert.That(ex!.Message, Does.Contain(missing).And.Contain("AdditionalPaths"));
    }
}
