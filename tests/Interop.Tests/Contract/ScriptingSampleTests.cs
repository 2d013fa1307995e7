namespace Interop.Tests.Contract;

/// <summary>Runs samples/Scripting as a user would (<c>dotnet Interop.Samples.Scripting.dll</c>), so CI builds and runs it.</summary>
[TestFixture]
[Category("numpy")]
public class ScriptingSampleTests
{
    [Test]
    public void The_scripting_sample_runs_the_analysis_in_both_kinds_shows_a_traceback_and_they_agree()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Interop.Samples.Scripting.dll");
        var (code, output, timedOut) = TestPython.Run("dotnet", [dll], TimeSpan.FromSeconds(180),
            new Dictionary<string, string> { ["INTEROP_PYTHON"] = TestPython.Executable });
        Assert.That(timedOut, Is.False, output);
        Assert.That(code, Is.Zero, output);
        Assert.That(output, Does.Contain("== InProcess").And.Contain("== Isolated"));
        Assert.That(output, Does.Contain("analysing 2 columns of 6 rows"), "print() output of the script, in-process");
        Assert.That(output, Does.Match(@"\[worker \d+\] analysing 2 columns"), "print() output of the script, isolated");
        Assert.That(output, Does.Contain("Python error KeyError: 'age'").And.Contain("File \"<script>\", line 1"));
        Assert.That(output, Does.Contain("Both session kinds gave the same results."));
    }
}
