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
