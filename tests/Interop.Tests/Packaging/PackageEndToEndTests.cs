// Design notes: the packages as a new user meets them. The test packs the solution (already built) with a version
// suffix unique to this run, creates a fresh console app in a temporary folder outside the repository, with its own
// NuGet cache and a nuget.config whose only extra source is the packed folder (package source mapping: Interop* comes
// from there only; big third-party packages come from the machine's cache as a read-only fallback folder, so nothing
// large is copied), adds the packages by name, and builds and runs the README samples (samples/*/Program.cs, verbatim)
// in it, comparing their output with samples/*/expected.txt. The samples run with INTEROP_PYTHON unset and from another
// working directory, so the library's own discovery and the deployed helper package are what is tested.
// Core samples (in-process and isolated) and the .NET tool run where the environment is not the Debian 13 root;
// the TorchSharp sample runs where TorchSharp can load (the Debian 13 root on a Debian 12 host).
using System.Diagnostics;
using System.IO.Compression;

namespace Interop.Tests.Packaging;

[TestFixture]
[Category("packaging")]
[NonParallelizable]
public class PackageEndToEndTests
{
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(5);
    private string _work = null!;
    private string _packages = null!;
    private string _version = null!;
    private Dictionary<string, string?> _env = null!;

    private static string Repo => TestPython.RepositoryRoot;

    private static bool InDebian13Root => Environment.GetEnvironmentVariable("INTEROP_ENVIRONMENT") == "debian13";

    private static bool TorchSharpCanLoad
    {
        get
        {
            foreach (var lib in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6" })
                if (File.Exists(lib))
                    return System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(lib)).Contains("GLIBCXX_3.4.32", StringComparison.Ordinal);
            return false;
        }
    }

    [OneTimeSetUp]
    public void Pack()
    {
        _work = Directory.CreateTempSubdirectory("interop-package-e2e-").FullName;
        Assert.That(_work, Does.Not.StartWith(Repo), "the app must live outside the repository");
        _packages = Path.Combine(_work, "packages");
        _version = $"{ReadVersionPrefix()}-e2e.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        var machineCache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } n ? n
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        File.WriteAllText(Path.Combine(_work, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config><add key="globalPackagesFolder" value="{Path.Combine(_work, "nuget-cache")}" /></config>
              <packageSources>
                <clear />
                <add key="interop-local" value="{_packages}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <fallbackPackageFolders><clear /><add key="machine" value="{machineCache}" /></fallbackPackageFolders>
              <packageSourceMapping>
                <packageSource key="interop-local"><package pattern="Interop" /><package pattern="Interop.*" /></packageSource>
                <packageSource key="nuget.org"><package pattern="*" /></packageSource>
              </packageSourceMapping>
            </configuration>
            """);
        // The app's environment: no repository-specific variables, so discovery and the helper package are the library's own.
        _env = new() { ["INTEROP_PYTHON"] = null, ["PYTHONNET_PYDLL"] = null, ["NUGET_PACKAGES"] = null, ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1", ["DOTNET_NOLOGO"] = "1",
                 // No MSBuild node reuse and no compiler server: a lingering server would hold the output pipes this test reads.
                 ["MSBUILDDISABLENODEREUSE"] = "1", ["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0", ["UseSharedCompilation"] = "false" };
        Run("dotnet", ["pack", Path.Combine(Repo, "Interop.sln"), "-c", "Release", "--no-build", "-nologo", "-v:quiet", "-o", _packages, $"-p:VersionSuffix={_version[(_version.IndexOf('-', StringComparison.Ordinal) + 1)..]}"], Repo);
    }

    [OneTimeTearDown]
    public void CleanUp()
    {
        if (_work is not null && Directory.Exists(_work))
            Directory.Delete(_work, recursive: true);
    }

    private static string ReadVersionPrefix()
    {
        var props = File.ReadAllText(Path.Combine(Repo, "Directory.Build.props"));
        var m = System.Text.RegularExpressions.Regex.Match(props, "<VersionPrefix>([^<]+)</VersionPrefix>");
        Assert.That(m.Success, "Directory.Build.props sets VersionPrefix");
        return m.Groups[1].Value;
    }

    private string Run(string file, IEnumerable<string> args, string workingDirectory, TimeSpan? timeout = null, int[]? okCodes = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        foreach (var a in args)
            start.ArgumentList.Add(a);
        foreach (var (k, v) in _env)
        {
            if (v is null)
                start.Environment.Remove(k);
            else
                start.Environment[k] = v;
        }
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? Step))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', start.ArgumentList)} did not finish within {(timeout ?? Step).TotalSeconds} s:\n{stdout.Result}{stderr.Result}");
        }
        p.WaitForExit();
        if (!Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(60)))
            Assert.Fail($"{file} {string.Join(' ', start.ArgumentList)} exited, but a process it left behind keeps its output open");
        Assert.That(okCodes ?? [0], Has.Member(p.ExitCode), $"{file} {string.Join(' ', start.ArgumentList)} exited with {p.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }

    private static string[] Entries(string nupkg)
    {
        using var zip = ZipFile.OpenRead(nupkg);
        return zip.Entries.Select(e => e.FullName).ToArray();
    }

    [Test]
    public void The_packages_carry_their_files_and_metadata()
    {
        var core = Entries(Path.Combine(_packages, $"Interop.{_version}.nupkg"));
        var helpers = Directory.GetFiles(Path.Combine(Repo, "python", "interop_helpers"), "*.py").Select(Path.GetFileName)
            .Where(f => f != "_version.py").Append("_version.py").Select(f => $"python/interop_helpers/{f}");
        TestContext.Progress.WriteLine($"Interop.{_version}.nupkg:\n  " + string.Join("\n  ", core.Order()));
        Assert.Multiple(() =>
        {
            Assert.That(core, Is.SupersetOf(helpers.Concat(["lib/net10.0/Interop.dll", "lib/net10.0/Interop.xml", "README.md", "buildTransitive/Interop.targets", "build/Interop.targets"])));
            Assert.That(Entries(Path.Combine(_packages, $"Interop.TorchSharp.{_version}.nupkg")), Is.SupersetOf(new[] { "lib/net10.0/Interop.TorchSharp.dll", "lib/net10.0/Interop.TorchSharp.xml", "README.md" }));
            Assert.That(Entries(Path.Combine(_packages, $"Interop.Tool.{_version}.nupkg")), Has.Some.EndsWith("DotnetToolSettings.xml").And.Some.EndsWith("python/interop_helpers/calls.py"));
            Assert.That(File.Exists(Path.Combine(_packages, $"Interop.{_version}.snupkg")), "symbols package");
        });
        using var zip = ZipFile.OpenRead(Path.Combine(_packages, $"Interop.{_version}.nupkg"));
        using var nuspec = new StreamReader(zip.GetEntry("Interop.nuspec")!.Open());
        var text = nuspec.ReadToEnd();
        Assert.Multiple(() =>
        {
            Assert.That(text, Does.Contain("<license type=\"expression\">").And.Contain("<readme>README.md</readme>").And.Contain("<repository ").And.Contain("<tags>"));
        });
    }

    // A fresh console app, the packages added by name, each sample's Program.cs built and run in it.
    private string NewApp(string name, params string[] packages)
    {
        var app = Path.Combine(_work, name);
        var clock = Stopwatch.StartNew();
        Run("dotnet", ["new", "console", "-o", app, "--no-restore"], _work);
        foreach (var package in packages)
            Run("dotnet", ["add", app, "package", package, "--version", _version], _work);
        TestContext.Progress.WriteLine($"{name}: dotnet new + dotnet add package {string.Join(", ", packages)}: {clock.Elapsed.TotalSeconds:0.0} s");
        return app;
    }

    private string BuildAndRunSample(string app, string sample, Stopwatch? sinceAdd = null)
    {
        var source = Path.Combine(Repo, "samples", sample);
        File.Copy(Path.Combine(source, "Program.cs"), Path.Combine(app, "Program.cs"), overwrite: true);
        File.SetLastWriteTimeUtc(Path.Combine(app, "Program.cs"), DateTime.UtcNow); // Copy keeps the old time: the build would skip it
        // The sample's Python files, as a user deploys theirs: beside the project, copied to the output.
        foreach (var py in new[] { "tiny_net.py", "seed_chain.py" })
            File.Copy(Path.Combine(Repo, "python", "interop_examples", py), Path.Combine(app, py), overwrite: true);
        var csproj = Directory.GetFiles(app, "*.csproj").Single();
        var project = File.ReadAllText(csproj);
        if (!project.Contains("*.py", StringComparison.Ordinal))
            File.WriteAllText(csproj, project.Replace("</Project>", "  <ItemGroup><None Update=\"*.py\" CopyToOutputDirectory=\"PreserveNewest\" /></ItemGroup>\n</Project>", StringComparison.Ordinal));
        Run("dotnet", ["build", app, "-c", "Release", "-nologo", "-v:quiet", "-clp:NoSummary"], _work);
        var dll = Path.Combine(app, "bin", "Release", "net10.0", Path.GetFileName(app) + ".dll");
        var helpers = Path.Combine(Path.GetDirectoryName(dll)!, "python", "interop_helpers");
        Assert.That(Directory.GetFiles(helpers, "*.py").Select(Path.GetFileName), Is.SupersetOf(new[] { "__init__.py", "_version.py", "calls.py", "worker.py" }), "the helper package lands beside the app's assembly");
        // Run from another working directory: the sample must not depend on it.
        var output = Run("dotnet", [dll], Path.GetTempPath());
        if (sinceAdd is not null)
            TestContext.Progress.WriteLine($"{sample}: from dotnet add package to the first result: {sinceAdd.Elapsed.TotalSeconds:0.0} s");
        var expected = File.ReadAllText(Path.Combine(source, "expected.txt"));
        Assert.That(output.ReplaceLineEndings("\n").Trim(), Is.EqualTo(expected.ReplaceLineEndings("\n").Trim()), $"samples/{sample}'s output changed");
        return output;
    }

    [Test]
    public void The_core_samples_build_and_run_in_a_fresh_app_in_process_and_isolated_and_publish_carries_the_helpers()
    {
        if (InDebian13Root)
            Assert.Ignore("core samples run in the host environment; the Debian 13 root runs the TorchSharp sample");
        var clock = Stopwatch.StartNew();
        var app = NewApp("CoreApp", "Interop");
        BuildAndRunSample(app, "QuickStart", clock);
        BuildAndRunSample(app, "TinyNet");
        BuildAndRunSample(app, "Isolated");
        var publish = Path.Combine(_work, "publish");
        Run("dotnet", ["publish", app, "-c", "Release", "-nologo", "-v:quiet", "-o", publish], _work);
        Assert.That(File.Exists(Path.Combine(publish, "python", "interop_helpers", "worker.py")), "publish carries the helper package");
        var output = Run("dotnet", [Path.Combine(publish, "CoreApp.dll")], Path.GetTempPath());
        Assert.That(output, Does.StartWith("softmax rows:"), "the published app runs");
    }

    [Test]
    public void The_TorchSharp_sample_builds_and_runs_in_a_fresh_app()
    {
        if (!TorchSharpCanLoad)
            Assert.Ignore("TorchSharp 0.107 needs GLIBCXX_3.4.32 (GCC 13+ libstdc++); this environment lacks it, the Debian 13 environment runs this test");
        var clock = Stopwatch.StartNew();
        var app = NewApp("TorchSharpApp", "Interop.TorchSharp");
        BuildAndRunSample(app, "TorchSharp", clock);
    }

    [Test]
    public void The_dotnet_tool_installs_from_the_folder_and_doctor_reports_the_discovery()
    {
        if (InDebian13Root)
            Assert.Ignore("the tool is checked in the host environment");
        var tools = Path.Combine(_work, "tools");
        Run("dotnet", ["tool", "install", "Interop.Tool", "--version", _version, "--tool-path", tools, "--configfile", Path.Combine(_work, "nuget.config")], _work);
        // 0: all usable; 2: the core works, TorchSharp cannot run (the tool carries no libtorch).
        var output = Run(Path.Combine(tools, "interop"), ["doctor"], Path.GetTempPath(), okCodes: [0, 2]);
        TestContext.Progress.WriteLine(output);
        Assert.Multiple(() =>
        {
            Assert.That(output, Does.Contain("chosen").And.Contain("searched"));
            Assert.That(output, Does.Match(@"helpers\s+\S+/python \(version "));
            Assert.That(output, Does.Not.Contain("problem:"));
        });
    }
}
