namespace Interop.Tests;

/// <summary>The process that embeds Python exits promptly without any disposal (pythonnet alone hangs at exit).</summary>
[TestFixture]
[Category("embedding")]
public class ExitTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static (int, string, bool) RunCli(params string[] args) =>
        TestPython.Run("dotnet", new[] { TestPython.CliDll }.Concat(args), Limit,
                       new Dictionary<string, string> { ["INTEROP_PYTHON"] = TestPython.Executable });

    [Test]
    public void A_process_that_used_Python_and_disposed_nothing_exits_promptly_and_runs_atexit_handlers()
    {
        var marker = Path.Combine(Path.GetTempPath(), $"interop-atexit-{Guid.NewGuid():N}");
        var (code, output, timedOut) = RunCli("exec", $"import atexit, numpy\nx = numpy.arange(10)\natexit.register(lambda: open({Quote(marker)}, 'w').write('ran'))\n");
        try
        {
            Assert.Multiple(() =>
            {
                Assert.That(timedOut, Is.False, "the child hung at exit: " + output);
                Assert.That(code, Is.Zero, output);
                Assert.That(File.Exists(marker), "Python's atexit handlers must run at process exit");
            });
        }
        finally
        {
            File.Delete(marker);
        }
    }

    [Test]
    public void A_process_with_a_running_Python_thread_still_exits_promptly()
    {
        var (code, output, timedOut) = RunCli("exec", "import threading, time\nthreading.Thread(target=lambda: time.sleep(3600), daemon=True).start()\n");
        Assert.That(timedOut, Is.False, "the child hung at exit: " + output);
        Assert.That(code, Is.Zero, output);
    }

    // PyTorch 2.6 (Debian 13): after the exit handlers gave up, a libtorch_python static destructor waited for the GIL
    // inside exit() for ever. The process must end after the bound, with the code Main returned.
    [TestCase("python-thread")]
    [TestCase("dotnet-call")]
    public void A_process_whose_GIL_is_kept_by_another_thread_ends_after_the_bound_with_its_exit_code(string mode)
    {
        var (code, output, timedOut) = RunCli("exit-with-gil-held", mode, "3");
        Assert.Multiple(() =>
        {
            Assert.That(timedOut, Is.False, "the child hung at exit: " + output);
            Assert.That(code, Is.EqualTo(3), output);
            Assert.That(output, Does.Contain("returning 3"), "the child's own output was flushed");
            Assert.That(output, Does.Contain("did not finish within"), output);
        });
    }

    // The GIL is free while Python's exit handlers run, but a thread that one of them starts takes it back for ever:
    // the rest of the exit (libtorch_python's static destructors, PyTorch 2.6) would wait for it; the bound ends it.
    // (Measured on Debian 13: "had not ended 5 s after Python's exit handlers ... ending it now", exit code 0. Which
    // thread wins the GIL first is a race, so the test asserts only what holds in every order: a prompt exit, code 0.)
    [Test]
    public void A_process_whose_GIL_is_taken_after_the_exit_handlers_ran_still_ends_with_its_exit_code()
    {
        var (code, output, timedOut) = RunCli("exec",
            "import atexit, threading, time\n" +
            "try:\n    import torch\nexcept ImportError:\n    pass\n" +
            "atexit.register(lambda: threading.Thread(target=lambda: (time.sleep(0.001), sum(range(10**13))), daemon=True).start())\n");
        Assert.Multiple(() =>
        {
            Assert.That(timedOut, Is.False, "the child hung at exit: " + output);
            Assert.That(code, Is.Zero, output);
        });
    }

    [Test]
    public void A_Python_error_in_the_child_gives_exit_code_1_and_the_traceback()
    {
        var (code, output, timedOut) = RunCli("exec", "raise KeyError('missing-key')");
        Assert.That(timedOut, Is.False);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("KeyError").And.Contain("missing-key").And.Contain("Traceback"));
    }

    private static string Quote(string s) => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";
}
