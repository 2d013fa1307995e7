using System.Diagnostics;
using Interop.Embedding;
using Interop.Errors;

namespace Interop.TorchSharp.Tests;

/// <summary>
/// One libtorch per process, for real: child processes load one libtorch and ask the library for the other; they must
/// exit with LibTorchConflictException (exit code 3), never a signal. This process never imports Python torch.
/// </summary>
[TestFixture]
[Category("torchsharp")]
[Category("torch")]
public class LibTorchConflictTests : TorchSharpFixture
{
    [TestCase("torchsharp-first")]
    [TestCase("python-first")]
    public void Loading_the_other_libtorch_is_refused_with_both_versions_not_a_crash(string order)
    {
        var pythonTorch = PythonRuntime.Installation.TorchVersion;
        if (pythonTorch is null)
            Assert.Ignore("Python torch is not installed for the interpreter under test");
        if (TorchSharpSupport.SharingProblem(pythonTorch, TorchSharpSupport.LibTorchVersion) is null)
            Assert.Ignore($"Python torch {pythonTorch} is TorchSharp's libtorch release: the processes may share it (see the shared test)");
        var (code, output) = Child(order);
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(3), "exit code 3 = LibTorchConflictException; a signal would be 128+N:\n" + output);
            Assert.That(output, Does.Contain("LibTorchConflictException"));
            Assert.That(output, Does.Contain(pythonTorch!).And.Contain(TorchSharpSupport.LibTorchVersion));
            Assert.That(output, Does.Contain("separate process").And.Contain("torch==" + TorchSharpSupport.LibTorchVersion));
            Assert.That(output, Does.Contain(order == "torchsharp-first" ? "TorchSharp loaded" : "Python torch loaded"), "the first load happened");
        });
    }

    [Test]
    public void TorchSharp_used_directly_before_the_library_is_not_taken_for_a_foreign_libtorch()
    {
        // e.g. a TorchVision model built before ModelWeights.LoadWeightsFrom: TorchSharp's own libtorch is already mapped.
        var (code, output) = Child("torchsharp-direct");
        Assert.That(code, Is.Zero, output);
        Assert.That(output, Does.Contain("TorchSharp used first, then the library: 3"));
    }

    [Test]
    public void The_shared_setup_runs_both_sides_on_one_libtorch()
    {
        var pythonTorch = PythonRuntime.Installation.TorchVersion;
        if (TorchSharpSupport.SharingProblem(pythonTorch, TorchSharpSupport.LibTorchVersion) is { } problem)
            Assert.Ignore($"The shared setup needs Python torch {TorchSharpSupport.LibTorchVersion}: {problem}");
        var (code, output) = Child("shared");
        Assert.That(code, Is.Zero, output);
    }

    internal static (int Code, string Output) Child(string order)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Interop.TorchSharp.Tests.dll"));
        start.ArgumentList.Add("conflict");
        start.ArgumentList.Add(order);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("the child did not finish in 120 s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}

/// <summary>Version parsing, library resolution and refusals of the shared setup: nothing native is loaded, so these run everywhere.</summary>
[TestFixture]
[Category("torchsharp")]
public class SharedLibTorchTests
{
    [TestCase("2.10.0", "2.10.0", true)]
    [TestCase("2.10.0+cpu", "2.10.0", true)]
    [TestCase("2.10.0a0+git1234", "2.10.0", true)]
    [TestCase("2.10", "2.10.0", true)]
    [TestCase("2.6.0+debian", "2.10.0", false)]
    [TestCase("2.10.1", "2.10.0", false)]
    [TestCase("1.13.1", "2.10.0", false)]
    public void Sharing_needs_the_same_release(string python, string libtorch, bool shareable)
    {
        var problem = TorchSharpSupport.SharingProblem(python, libtorch);
        Assert.That(problem is null, Is.EqualTo(shareable), problem);
        if (!shareable)
            Assert.That(problem, Does.Contain(python).And.Contain(libtorch));
    }

    [Test]
    public void Sharing_is_refused_without_python_torch_or_with_unreadable_versions()
    {
        Assert.That(TorchSharpSupport.SharingProblem(null, "2.10.0"), Does.Contain("not installed"));
        Assert.That(TorchSharpSupport.SharingProblem("nightly", "2.10.0"), Does.Contain("cannot compare"));
    }

    [Test]
    public void The_shared_libraries_resolve_in_load_order_and_a_missing_one_is_named()
    {
        var dir = Directory.CreateTempSubdirectory("interop-torchlib-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "libc10.so"), "");
            var e = Assert.Throws<TorchSharpUnavailableException>(() => TorchSharpSupport.ResolveSharedLibraries(dir));
            Assert.That(e!.Message, Does.Contain("libtorch_cpu.so").And.Contain("libtorch.so").And.Not.Contain("libc10.so,"));
            File.WriteAllText(Path.Combine(dir, "libtorch_cpu.so"), "");
            File.WriteAllText(Path.Combine(dir, "libtorch.so"), "");
            Assert.That(TorchSharpSupport.ResolveSharedLibraries(dir).Select(Path.GetFileName),
                Is.EqualTo(new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void UseSharedLibTorch_refuses_a_python_torch_of_another_release_before_loading_anything()
    {
        var pythonTorch = PythonRuntime.Installation.TorchVersion;
        if (pythonTorch is null)
            Assert.Ignore("Python torch is not installed for the interpreter under test");
        if (TorchSharpSupport.SharingProblem(pythonTorch, TorchSharpSupport.LibTorchVersion) is null)
            Assert.Ignore($"Python torch {pythonTorch} equals TorchSharp's libtorch: nothing to refuse");
        var mapped = Interop.Torch.LibTorchGuard.MappedLibTorchFiles().Count;
        var e = Assert.Throws<LibTorchConflictException>(() => TorchSharpSupport.UseSharedLibTorch());
        Assert.Multiple(() =>
        {
            Assert.That(e!.PythonTorchVersion, Is.EqualTo(pythonTorch));
            Assert.That(e.TorchSharpLibTorchVersion, Is.EqualTo(TorchSharpSupport.LibTorchVersion));
            Assert.That(e.Message, Does.Contain("shared setup").And.Contain("separate process"));
            Assert.That(TorchSharpSupport.SharedLibTorchDirectory, Is.Null);
            Assert.That(Interop.Torch.LibTorchGuard.MappedLibTorchFiles(), Has.Count.EqualTo(mapped), "nothing was loaded");
        });
    }

    [Test]
    public void The_libtorch_version_comes_from_the_deps_json_without_loading_TorchSharp()
    {
        const string deps = """{"libraries": {"TorchSharp/0.107.0": {}, "libtorch-cpu/2.10.0": {}, "libtorch-cpu-linux-x64/2.10.0": {}}}""";
        Assert.That(TorchSharpSupport.LibTorchVersionFromDeps(deps), Is.EqualTo(("2.10.0", "deps.json: libtorch-cpu-linux-x64")));
        Assert.That(TorchSharpSupport.LibTorchVersionFromDeps("""{"libraries": {}}"""), Is.Null);
        Assert.Multiple(() =>
        {
            Assert.That(TorchSharpSupport.LibTorchVersion, Is.EqualTo("2.10.0"));
            Assert.That(TorchSharpSupport.LibTorchVersionSource, Does.StartWith("deps.json"));
            Assert.That(TorchSharpSupport.TorchSharpVersion, Is.EqualTo("0.107.0"));
        });
    }
}
