using Interop.Torch;

namespace Interop.Tests;

/// <summary>The core half of the one-libtorch-per-process guard: maps parsing, versions, ownership of mapped files.</summary>
[TestFixture]
public class LibTorchGuardTests
{
    [Test]
    public void Libtorch_files_are_found_in_proc_maps_lines_once_each_paths_with_spaces_included()
    {
        string[] lines =
        [
            "7f00-7f10 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libtorch_cpu.so.2.6.0",
            "7f10-7f20 r-xp 00010000 08:01 123 /usr/lib/x86_64-linux-gnu/libtorch_cpu.so.2.6.0",
            "7f20-7f30 r--p 00000000 08:01 124 /opt/my app/runtimes/linux-x64/native/libc10.so",
            "7f30-7f40 r--p 00000000 08:01 125 /usr/lib/x86_64-linux-gnu/libtorch_python.so.2.6.0",
            "7f40-7f50 r--p 00000000 08:01 126 /opt/app/libLibTorchSharp.so",
            "7f50-7f60 rw-p 00000000 00:00 0 ",
            "7f60-7f70 r--p 00000000 08:01 127 /usr/lib/libtorchvision.so",
            "7ffd-7ffe rw-p 00000000 00:00 0                          [stack]",
        ];
        Assert.That(LibTorchGuard.FindLibTorchPaths(lines), Is.EqualTo(new[]
        {
            "/usr/lib/x86_64-linux-gnu/libtorch_cpu.so.2.6.0", "/opt/my app/runtimes/linux-x64/native/libc10.so",
        }));
    }

    [TestCase("2.6.0+debian", "2.6.0")]
    [TestCase("2.10.0+cpu", "2.10.0")]
    [TestCase("2.10.0a0+git1234", "2.10.0")]
    [TestCase("v1.13.1", "1.13.1")]
    [TestCase("2.10", "2.10.0")]
    [TestCase("2.10.0.0", "2.10.0")]
    public void Releases_parse_without_local_or_prerelease_suffixes(string version, string release) =>
        Assert.That(LibTorchGuard.ParseRelease(version), Is.EqualTo(Version.Parse(release)));

    [TestCase(null)]
    [TestCase("")]
    [TestCase("unknown")]
    [TestCase("2")]
    public void Unreadable_versions_parse_to_null(string? version) => Assert.That(LibTorchGuard.ParseRelease(version), Is.Null);

    [Test]
    public void Same_release_ignores_suffixes_and_versioned_file_names_give_their_version()
    {
        Assert.Multiple(() =>
        {
            Assert.That(LibTorchGuard.SameRelease("2.10.0+cpu", "2.10.0"), Is.True);
            Assert.That(LibTorchGuard.SameRelease("2.6.0+debian", "2.10.0"), Is.False);
            Assert.That(LibTorchGuard.SameRelease(null, "2.10.0"), Is.False);
            Assert.That(LibTorchGuard.VersionFromFileName("/usr/lib/x86_64-linux-gnu/libtorch_cpu.so.2.6.0"), Is.EqualTo("2.6.0"));
            Assert.That(LibTorchGuard.VersionFromFileName("/app/libtorch_cpu.so"), Is.Null);
        });
    }

    [Test]
    public void Python_torchs_own_libraries_are_recognised_through_symbolic_links()
    {
        // Debian's torch/lib holds links into /usr/lib; pip wheels keep the files under the package.
        var root = Directory.CreateTempSubdirectory("interop-guard-").FullName;
        try
        {
            var package = Directory.CreateDirectory(Path.Combine(root, "site", "torch", "lib")).Parent!.FullName;
            var system = Directory.CreateDirectory(Path.Combine(root, "usr-lib")).FullName;
            var real = Path.Combine(system, "libtorch_cpu.so.2.6.0");
            File.WriteAllText(real, "");
            File.CreateSymbolicLink(Path.Combine(package, "lib", "libtorch_cpu.so"), real);
            File.WriteAllText(Path.Combine(package, "lib", "libc10.so"), "");
            Assert.Multiple(() =>
            {
                Assert.That(LibTorchGuard.BelongsToPythonTorch(real, package), Is.True, "linked from torch/lib");
                Assert.That(LibTorchGuard.BelongsToPythonTorch(Path.Combine(package, "lib", "libc10.so"), package), Is.True, "under the package");
                Assert.That(LibTorchGuard.BelongsToPythonTorch("/app/runtimes/linux-x64/native/libtorch_cpu.so", package), Is.False, "TorchSharp's copy");
                Assert.That(LibTorchGuard.BelongsToPythonTorch(real, null), Is.False, "no Python torch");
            });
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Test]
    [Category("torch")]
    public void Importing_python_torch_passes_the_guard_when_no_other_libtorch_is_loaded_and_maps_only_its_own()
    {
        using var t = TorchTensor.Evaluate("torch.ones(2)");
        var mapped = LibTorchGuard.MappedLibTorchFiles();
        Assert.That(mapped, Is.Not.Empty, "importing torch maps libtorch");
        var package = Embedding.PythonRuntime.Run(LibTorchGuard.PythonTorchPackageDirectory);
        Assert.That(mapped.All(p => LibTorchGuard.BelongsToPythonTorch(p, package)), Is.True, string.Join(", ", mapped));
    }
}
