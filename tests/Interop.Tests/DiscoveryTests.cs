using Interop.Embedding;
using Interop.Errors;

namespace Interop.Tests;

[TestFixture]
[Category("embedding")]
public class DiscoveryTests
{
    private string _scratch = null!;

    [SetUp]
    public void SetUp() => _scratch = Directory.CreateTempSubdirectory("interop-discovery-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_scratch, recursive: true);

    private static PythonOptions OnlyEnv(Dictionary<string, string?> env) =>
        new() { GetEnvironmentVariable = name => env.GetValueOrDefault(name), WellKnownDirectories = [] };

    [Test]
    public void Finds_the_interpreter_under_test_with_its_shared_libpython_and_packages()
    {
        var found = PythonDiscovery.Find(new PythonOptions { PythonExecutable = TestPython.Executable });
        Assert.Multiple(() =>
        {
            Assert.That(found.Version, Is.GreaterThanOrEqualTo(new Version(3, 10)));
            Assert.That(File.Exists(found.LibraryPath), found.LibraryPath);
            Assert.That(Path.GetFileName(found.LibraryPath), Does.StartWith($"libpython{found.Version.Major}.{found.Version.Minor}"));
            Assert.That(found.NumPyVersion, Is.Not.Null);
            Assert.That(found.TorchVersion, Is.Not.Null);
            Assert.That(found.SysPath, Is.Not.Empty);
            Assert.That(found.Source, Is.EqualTo("PythonOptions.PythonExecutable"));
        });
    }

    [Test]
    public void Explicit_option_wins_over_the_environment()
    {
        var env = new Dictionary<string, string?> { ["INTEROP_PYTHON"] = "/nonexistent/python3", ["PATH"] = "" };
        var found = PythonDiscovery.Find(OnlyEnv(env) with { PythonExecutable = TestPython.Executable });
        Assert.That(found.Source, Is.EqualTo("PythonOptions.PythonExecutable"));
    }

    [Test]
    public void INTEROP_PYTHON_comes_before_PYTHONNET_PYDLL_which_comes_before_VIRTUAL_ENV()
    {
        var lib = TestPython.Installation.LibraryPath;
        var both = new Dictionary<string, string?> { ["INTEROP_PYTHON"] = TestPython.Executable, ["PYTHONNET_PYDLL"] = lib, ["VIRTUAL_ENV"] = _scratch };
        Assert.That(PythonDiscovery.Find(OnlyEnv(both)).Source, Is.EqualTo("INTEROP_PYTHON"));

        var pydll = new Dictionary<string, string?> { ["PYTHONNET_PYDLL"] = lib, ["VIRTUAL_ENV"] = _scratch };
        var fromLib = PythonDiscovery.Find(OnlyEnv(pydll));
        Assert.Multiple(() =>
        {
            Assert.That(fromLib.Source, Is.EqualTo("PYTHONNET_PYDLL"));
            Assert.That(fromLib.LibraryPath, Is.EqualTo(Path.GetFullPath(lib)));
            // The interpreter that belongs to the library is found, so versions are known.
            Assert.That(fromLib.Version.ToString(2), Is.EqualTo(TestPython.Installation.Version.ToString(2)));
        });
    }

    [Test]
    public void Active_virtual_environment_is_used_and_reported()
    {
        var venv = CreateVenv(systemSitePackages: true);
        var found = PythonDiscovery.Find(OnlyEnv(new() { ["VIRTUAL_ENV"] = venv }));
        Assert.Multiple(() =>
        {
            Assert.That(found.Source, Is.EqualTo("VIRTUAL_ENV"));
            Assert.That(found.IsVirtualEnvironment, Is.True);
            Assert.That(found.Prefix, Is.EqualTo(venv));
            Assert.That(found.NumPyVersion, Is.Not.Null, "system site-packages are visible in this venv");
        });
    }

    [Test]
    public void Python3_on_PATH_is_the_last_resort()
    {
        var bin = Directory.CreateDirectory(Path.Combine(_scratch, "bin")).FullName;
        File.CreateSymbolicLink(Path.Combine(bin, "python3"), TestPython.Executable);
        var found = PythonDiscovery.Find(OnlyEnv(new() { ["PATH"] = bin }));
        Assert.That(found.Source, Is.EqualTo("python3 on PATH"));
    }

    [Test]
    public void A_directory_without_python_gives_PythonNotFoundException_with_the_fix()
    {
        var ex = Assert.Throws<PythonNotFoundException>(() => PythonDiscovery.Find(new PythonOptions { VirtualEnvironment = _scratch }));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.Message, Does.Contain(_scratch));
            Assert.That(ex.Message, Does.Contain("apt-get install python3"));
            Assert.That(ex.Searched, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public void Nothing_anywhere_gives_PythonNotFoundException_listing_what_was_searched()
    {
        var ex = Assert.Throws<PythonNotFoundException>(() => PythonDiscovery.Find(OnlyEnv(new() { ["PATH"] = _scratch })));
        Assert.That(ex!.Searched, Has.Some.Contains("python3 on PATH"));
    }

    [Test]
    public void A_file_that_is_not_python_gives_PythonNotFoundException()
    {
        var fake = Path.Combine(_scratch, "python3");
        File.WriteAllText(fake, "#!/bin/sh\necho not python; exit 3\n");
        File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        var ex = Assert.Throws<PythonNotFoundException>(() => PythonDiscovery.Find(new PythonOptions { PythonExecutable = fake }));
        Assert.That(ex!.Message, Does.Contain("exit 3"));
    }

    [Test]
    public void A_venv_without_numpy_is_found_and_Require_names_pip_for_it_not_apt()
    {
        var venv = CreateVenv(systemSitePackages: false);
        var found = PythonDiscovery.Find(new PythonOptions { VirtualEnvironment = venv });
        Assert.That(found.NumPyVersion, Is.Null);
        var ex = Assert.Throws<PythonPackageMissingException>(() => found.Require("numpy"));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.Package, Is.EqualTo("numpy"));
            // Debian's python3-numpy would not reach a venv without system site-packages: only pip is a fix that works.
            Assert.That(ex.Message, Does.Not.Contain("apt-get"));
            Assert.That(ex.Message, Does.Contain(Path.Combine(venv, "bin", "python") + " -m pip install \"numpy"));
            Assert.That(ex.Message, Does.Contain("INTEROP_PYTHON"));
        });
        Assert.Throws<PythonPackageMissingException>(() => found.Require("torch"));
    }

    [Test]
    public void A_python_without_a_shared_libpython_gives_PythonSharedLibraryNotFoundException()
    {
        // A real interpreter whose sysconfig reports a static build (as pyenv's default build does).
        var site = Directory.CreateDirectory(Path.Combine(_scratch, "site")).FullName;
        File.WriteAllText(Path.Combine(site, "sitecustomize.py"),
            "import sysconfig\n_real = sysconfig.get_config_var\n" +
            "def _fake(name):\n    if name == 'Py_ENABLE_SHARED': return 0\n    if name in ('LDLIBRARY', 'INSTSONAME'): return 'libpython-static.a'\n    return _real(name)\n" +
            "sysconfig.get_config_var = _fake\n");
        var wrapper = Path.Combine(_scratch, "python3");
        File.WriteAllText(wrapper, $"#!/bin/sh\nPYTHONPATH='{site}' exec '{TestPython.Executable}' \"$@\"\n");
        File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        var ex = Assert.Throws<PythonSharedLibraryNotFoundException>(() => PythonDiscovery.Find(new PythonOptions { PythonExecutable = wrapper }));
        Assert.That(ex!.Message, Does.Contain("--enable-shared").And.Contain("apt-get install libpython"));
    }

    [TestCase(3, 9, false)]
    [TestCase(2, 7, false)]
    [TestCase(3, 10, true)]
    [TestCase(3, 13, true)]
    [TestCase(3, 14, false)]
    public void Version_range_is_enforced(int major, int minor, bool supported)
    {
        void Check() => PythonDiscovery.CheckVersion(new Version(major, minor, 1), "/x/python");
        if (supported)
            Assert.DoesNotThrow(Check);
        else
            Assert.That(Assert.Throws<PythonVersionNotSupportedException>(Check)!.Message, Does.Contain($"{major}.{minor}").And.Contain("3.10 to 3.13"));
    }

    [Test]
    public void A_libpython_of_an_unsupported_version_is_refused_before_loading()
    {
        var lib = Path.Combine(_scratch, "libpython3.9.so.1.0");
        File.WriteAllText(lib, "");
        Assert.Throws<PythonVersionNotSupportedException>(() => PythonDiscovery.Find(new PythonOptions { LibraryPath = lib }));
    }

    // ---- the automatic search, with fake interpreters on PATH ------------------------------------------------

    // A directory holding a "python3" that runs the interpreter under test with a sitecustomize that fakes a lack:
    // "libpython" (a static build, as pyenv's default), or hides packages ("numpy", "torch") from the probe.
    private string Fake(string name, params string[] lacks)
    {
        var dir = Directory.CreateDirectory(Path.Combine(_scratch, name)).FullName;
        var site = Directory.CreateDirectory(Path.Combine(dir, "site")).FullName;
        var code = "import sysconfig, importlib.util as _u\n";
        if (lacks.Contains("libpython"))
            code += "_real = sysconfig.get_config_var\n" +
                    "def _fake(name):\n    if name == 'Py_ENABLE_SHARED': return 0\n    if name in ('LDLIBRARY', 'INSTSONAME'): return 'libpython-static.a'\n    return _real(name)\n" +
                    "sysconfig.get_config_var = _fake\n";
        var hidden = lacks.Where(l => l != "libpython").ToArray();
        if (hidden.Length > 0)
            code += $"_hide = {{{string.Join(", ", hidden.Select(h => $"'{h}'"))}}}\n_find = _u.find_spec\n" +
                    "_u.find_spec = lambda name, package=None: None if name.split('.')[0] in _hide else _find(name, package)\n";
        File.WriteAllText(Path.Combine(site, "sitecustomize.py"), code);
        var python = Path.Combine(dir, "python3");
        File.WriteAllText(python, $"#!/bin/sh\nPYTHONPATH='{site}' exec '{TestPython.Executable}' \"$@\"\n");
        File.SetUnixFileMode(python, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        return dir;
    }

    // A pyenv-like shim: a script in a "shims" folder that execs the real interpreter.
    private string Shim()
    {
        var dir = Directory.CreateDirectory(Path.Combine(_scratch, "pyenv", "shims")).FullName;
        var python = Path.Combine(dir, "python3");
        File.WriteAllText(python, $"#!/bin/sh\nexec '{TestPython.Executable}' \"$@\"\n");
        File.SetUnixFileMode(python, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        return dir;
    }

    private static string Path_(params string[] dirs) => string.Join(Path.PathSeparator, dirs);

    [Test]
    public void The_search_keeps_looking_past_interpreters_without_libpython_numpy_or_torch_and_takes_the_working_one_behind_a_shim()
    {
        var path = Path_(Fake("nolib", "libpython"), Fake("nonumpy", "numpy", "torch"), Fake("notorch", "torch"), Shim());
        var found = PythonDiscovery.Find(OnlyEnv(new() { ["PATH"] = path }));
        Assert.Multiple(() =>
        {
            Assert.That(found.Source, Is.EqualTo("python3 on PATH"));
            Assert.That(found.TorchVersion, Is.Not.Null);
            Assert.That(found.NumPyVersion, Is.Not.Null);
            // The shim is resolved to the interpreter it runs.
            Assert.That(found.Executable, Does.Not.Contain("shims"));
            Assert.That(found.Reason, Does.Contain("PyTorch"));
            Assert.That(found.Candidates.Select(c => c.Verdict).Skip(1), Is.EqualTo(new[] { "no NumPy and no PyTorch", "usable, but no PyTorch", "usable" }));
            Assert.That(found.Candidates[0].Verdict, Does.EndWith("has no shared libpython").And.Contain("nolib"));
            Assert.That(found.Candidates[3].Path, Does.Contain("shims"));
        });
    }

    [Test]
    public void A_numpy_only_user_is_not_refused_for_lacking_PyTorch()
    {
        var found = PythonDiscovery.Find(OnlyEnv(new() { ["PATH"] = Path_(Fake("nonumpy", "numpy"), Fake("notorch", "torch")) }));
        Assert.Multiple(() =>
        {
            Assert.That(found.NumPyVersion, Is.Not.Null);
            Assert.That(found.TorchVersion, Is.Null);
            Assert.That(found.Reason, Does.Contain("no candidate has PyTorch"));
        });
    }

    [Test]
    public void With_none_working_one_exception_lists_every_candidate_with_its_reason_and_the_fixes()
    {
        var broken = Directory.CreateDirectory(Path.Combine(_scratch, "broken")).FullName;
        File.WriteAllText(Path.Combine(broken, "python3"), "#!/bin/sh\nexit 3\n");
        File.SetUnixFileMode(Path.Combine(broken, "python3"), UnixFileMode.UserRead | UnixFileMode.UserExecute);
        var path = Path_(Fake("nolib", "libpython"), broken, Fake("nonumpy", "numpy"));
        var ex = Assert.Throws<PythonNotFoundException>(() => PythonDiscovery.Find(OnlyEnv(new() { ["PATH"] = path })));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.Candidates, Has.Count.EqualTo(3));
            Assert.That(ex.Message, Does.Contain("nolib").And.Contain("no shared libpython"));
            Assert.That(ex.Message, Does.Contain("broken").And.Contain("exit 3"));
            Assert.That(ex.Message, Does.Contain("nonumpy").And.Contain("no NumPy"));
            Assert.That(ex.Message, Does.Contain("INTEROP_PYTHON=").And.Contain("python3 -m venv"));
            // An install command only for what is really missing: NumPy, not PyTorch (the fake has it).
            var install = ex.Message.Split('\n').Where(l => l.Contains("install the missing packages", StringComparison.Ordinal)).ToArray();
            Assert.That(install, Has.Length.EqualTo(1));
            Assert.That(install[0], Does.Contain("numpy").And.Not.Contain("torch"));
        });
    }

    [Test]
    public void Isolated_workers_do_not_need_a_shared_libpython()
    {
        var found = PythonDiscovery.Find(OnlyEnv(new() { ["PATH"] = Fake("nolib", "libpython") }), requireSharedLibrary: false);
        Assert.That(found.Candidates.Single().Verdict, Is.EqualTo("usable"));
    }

    private string CreateVenv(bool systemSitePackages)
    {
        var dir = Path.Combine(_scratch, systemSitePackages ? "venv-sys" : "venv-bare");
        var args = new List<string> { "-m", "venv", "--without-pip", dir };
        if (systemSitePackages)
            args.Insert(3, "--system-site-packages");
        var (code, output, _) = TestPython.Run(TestPython.Executable, args, TimeSpan.FromSeconds(60));
        Assert.That(code, Is.Zero, "python -m venv failed: " + output);
        return dir;
    }
}
