using System.Text.Json;

namespace Interop.Tests;

/// <summary>`doctor --json`: the TorchSharp rows, and an exit code that says what cannot run here.</summary>
[TestFixture]
public class DoctorTests
{
    [Test]
    public void Doctor_reports_torchsharp_libtorch_libstdcxx_and_sharing_with_an_exit_code_that_matches()
    {
        var (code, output, timedOut) = TestPython.Run("dotnet", [TestPython.CliDll, "doctor", "--json"], TimeSpan.FromSeconds(120),
            new Dictionary<string, string> { ["INTEROP_PYTHON"] = TestPython.Executable });
        Assert.That(timedOut, Is.False);
        using var json = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var root = json.RootElement;
        var ts = root.GetProperty("torchSharp");
        var glibcxx = ts.GetProperty("glibcxx").GetBoolean();
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("libpython").GetString(), Is.EqualTo(TestPython.Installation.LibraryPath));
            Assert.That(ts.GetProperty("version").GetString(), Does.Match(@"^\d+\.\d+\.\d+"));
            Assert.That(ts.GetProperty("libtorch").GetString(), Does.Match(@"^\d+\.\d+\.\d+"));
            Assert.That(ts.GetProperty("share").GetString(), Does.StartWith(ts.GetProperty("canShareWithPyTorch").GetBoolean() ? "yes" : "no"));
            Assert.That(ts.GetProperty("share").GetString(), Does.Contain(TestPython.Installation.TorchVersion ?? "not installed"));
            if (glibcxx)
            {
                Assert.That(ts.GetProperty("problem").ValueKind, Is.EqualTo(JsonValueKind.Null), "TorchSharp runs where libstdc++ is new enough");
                Assert.That(code, Is.Zero, output);
            }
            else
            {
                Assert.That(ts.GetProperty("problem").GetString(), Does.Contain("GLIBCXX_3.4.32").And.Contain("Debian 13"));
                Assert.That(code, Is.EqualTo(2), "2: the core works, TorchSharp cannot run here");
            }
        });
    }
}
