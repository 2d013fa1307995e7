using Interop.Embedding;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;

namespace Interop.Tests;

/// <summary>The Python helper package: beside the assembly, complete, of this version; else a typed error at start-up.</summary>
[TestFixture]
[Category("embedding")]
public class HelperPackageTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("interop-helpers-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    // A copy of the helper package the build put beside this assembly.
    private string CopyOfDeployed()
    {
        var source = Path.Combine(AppContext.BaseDirectory, "python", PythonRuntime.HelperPackage);
        var target = Directory.CreateDirectory(Path.Combine(_dir, PythonRuntime.HelperPackage)).FullName;
        foreach (var file in Directory.GetFiles(source, "*.py"))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        return target;
    }

    [Test]
    public void The_build_puts_the_helper_package_of_this_version_beside_the_assembly()
    {
        var found = PythonRuntime.LocateHelperPackage();
        Assert.Multiple(() =>
        {
            Assert.That(found, Is.EqualTo(Path.Combine(AppContext.BaseDirectory, "python")));
            Assert.That(File.ReadAllText(Path.Combine(found, PythonRuntime.HelperPackage, "_version.py")), Does.Contain($"\"{PythonRuntime.LibraryVersion}\""));
            Assert.That(PythonRuntime.LibraryVersion, Does.Match(@"^\d+\.\d+\.\d+"));
        });
    }

    [Test]
    public void A_missing_helper_package_names_the_expected_place_and_the_fix()
    {
        var ex = Assert.Throws<HelperPackageException>(() => PythonRuntime.LocateHelperPackage(new PythonOptions { HelperPackageDirectory = _dir }));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.ExpectedDirectory, Is.EqualTo(_dir));
            Assert.That(ex.Message, Does.Contain(Path.Combine(_dir, "interop_helpers")).And.Contain("dotnet add package Interop"));
            Assert.That(ex.FoundVersion, Is.Null);
        });
    }

    [Test]
    public void A_helper_package_of_another_version_is_refused()
    {
        var package = CopyOfDeployed();
        File.WriteAllText(Path.Combine(package, "_version.py"), "version = \"0.0.1-old\"\n");
        var ex = Assert.Throws<HelperPackageException>(() => PythonRuntime.LocateHelperPackage(new PythonOptions { HelperPackageDirectory = _dir }));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.FoundVersion, Is.EqualTo("0.0.1-old"));
            Assert.That(ex.ExpectedVersion, Is.EqualTo(PythonRuntime.LibraryVersion));
            Assert.That(ex.Message, Does.Contain("another version"));
        });
    }

    [Test]
    public void An_incomplete_helper_package_names_the_missing_files()
    {
        var package = CopyOfDeployed();
        File.Delete(Path.Combine(package, "calls.py"));
        var ex = Assert.Throws<HelperPackageException>(() => PythonRuntime.LocateHelperPackage(new PythonOptions { HelperPackageDirectory = _dir }));
        Assert.That(ex!.Message, Does.Contain("calls.py"));
    }

    [Test]
    public void An_isolated_session_checks_its_helper_package_when_created_not_at_the_first_call()
    {
        var options = new WorkerOptions { Python = new PythonOptions { PythonExecutable = TestPython.Executable, HelperPackageDirectory = _dir } };
        Assert.Throws<HelperPackageException>(() => PythonSession.Isolated(options).Dispose());
    }

    [Test]
    public void A_complete_copy_of_this_version_is_accepted()
    {
        CopyOfDeployed();
        Assert.That(PythonRuntime.LocateHelperPackage(new PythonOptions { HelperPackageDirectory = _dir }), Is.EqualTo(_dir));
    }
}
