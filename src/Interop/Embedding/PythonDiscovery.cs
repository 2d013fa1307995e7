// Design notes: discovery never loads Python into this process. It runs the candidate interpreter once as
// a child process with a small probe that prints JSON (sysconfig, sys.path, package versions through
// importlib.metadata), so a bad candidate costs a child process, never a crash of the host.
using System.Diagnostics;
using System.Text.Json;
using Interop.Errors;

namespace Interop.Embedding;

/// <summary>Finds a CPython to embed and its shared libpython; see <see cref="PythonOptions"/> for the order.</summary>
public static class PythonDiscovery
{
    /// <summary>The oldest CPython this library embeds.</summary>
    public static readonly Version MinimumVersion = new(3, 10);

    /// <summary>The newest CPython this library embeds (pythonnet 3.2's upper bound).</summary>
    public static readonly Version MaximumVersion = new(3, 13);

    private const string Probe = """
        import importlib.metadata, importlib.util, json, os, sys, sysconfig
        def version(name):
            if importlib.util.find_spec(name) is None:
                return None
            try:
                return importlib.metadata.version(name)
            except Exception:
                return "unknown"
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        dirs = [libdir, os.path.join(libdir, sysconfig.get_config_var("MULTIARCH") or ""),
                os.path.join(sys.base_prefix, "lib"), sys.base_prefix]
        names = [sysconfig.get_config_var(k) for k in ("INSTSONAME", "LDLIBRARY")]
        names.append("python%d%d.dll" % sys.version_info[:2])
        def shared(path):
            base = os.path.basename(path)
            return os.path.isfile(path) and (".so" in base or base.endswith((".dylib", ".dll")))
        looked = [os.path.join(d, n) for n in names if n for d in dirs if d]
        print(json.dumps({
            "executable": sys.executable,
            "version": "%d.%d.%d" % sys.version_info[:3],
            "library": next((p for p in looked if shared(p)), None),
            "looked": sorted(set(looked)),
            "prefix": sys.prefix, "base_prefix": sys.base_prefix,
            "sys_path": [p for p in sys.path if p],
            "numpy": version("numpy"), "torch": version("torch"),
        }))
        """;

    /// <summary>Finds an interpreter per <paramref name="options"/> and the environment, and checks it can be embedded.</summary>
    /// <exception cref="PythonNotFoundException">No candidate interpreter exists.</exception>
    /// <exception cref="PythonSharedLibraryNotFoundException">The interpreter has no shared libpython.</exception>
    /// <exception cref="PythonVersionNotSupportedException">The interpreter's version is out of range.</exception>
    public static PythonInstallation Find(PythonOptions? options = null)
    {
        options ??= new PythonOptions();
        var searched = new List<string>();
        var env = options.GetEnvironmentVariable;

        if (options.PythonExecutable is { } exe)
            return FromExecutable(exe, "PythonOptions.PythonExecutable", searched);
        if (options.LibraryPath is { } lib)
            return FromLibrary(lib, "PythonOptions.LibraryPath", searched);
        if (options.VirtualEnvironment is { } venv)
            return FromExecutable(VenvPython(venv), "PythonOptions.VirtualEnvironment", searched);
        if (env("INTEROP_PYTHON") is { Length: > 0 } interopPython)
            return FromExecutable(interopPython, "INTEROP_PYTHON", searched);
        if (env("PYTHONNET_PYDLL") is { Length: > 0 } pydll)
            return FromLibrary(pydll, "PYTHONNET_PYDLL", searched);
        if (env("VIRTUAL_ENV") is { Length: > 0 } active)
            return FromExecutable(VenvPython(active), "VIRTUAL_ENV", searched);
        foreach (var name in OperatingSystem.IsWindows() ? new[] { "python.exe", "python3.exe" } : ["python3"])
        {
            if (FindOnPath(name, env("PATH")) is { } onPath)
                return FromExecutable(onPath, $"{name} on PATH", searched);
            searched.Add($"{name} on PATH: not found");
        }
        throw new PythonNotFoundException(searched);
    }

    /// <summary>Throws <see cref="PythonVersionNotSupportedException"/> unless <paramref name="version"/> is supported.</summary>
    public static void CheckVersion(Version version, string where)
    {
        var minor = new Version(version.Major, version.Minor);
        if (minor < MinimumVersion || minor > MaximumVersion)
            throw new PythonVersionNotSupportedException(version, where, MinimumVersion, MaximumVersion);
    }

    private static string VenvPython(string venv) =>
        OperatingSystem.IsWindows() ? Path.Combine(venv, "Scripts", "python.exe") : Path.Combine(venv, "bin", "python");

    private static PythonInstallation FromExecutable(string executable, string source, List<string> searched)
    {
        var resolved = File.Exists(executable) ? Path.GetFullPath(executable) : FindOnPath(executable, Environment.GetEnvironmentVariable("PATH"));
        if (resolved is null)
        {
            searched.Add($"{source}: '{executable}' does not exist");
            throw new PythonNotFoundException(searched);
        }
        var probe = RunProbe(resolved, source, searched);
        var version = Version.Parse(probe.GetProperty("version").GetString()!);
        CheckVersion(version, resolved);
        var library = probe.GetProperty("library").GetString();
        if (library is null)
        {
            var looked = string.Join(", ", probe.GetProperty("looked").EnumerateArray().Select(e => e.GetString()));
            throw new PythonSharedLibraryNotFoundException(resolved, version.ToString(2), looked);
        }
        return new PythonInstallation
        {
            Executable = resolved,
            Version = version,
            LibraryPath = library,
            Prefix = probe.GetProperty("prefix").GetString(),
            BasePrefix = probe.GetProperty("base_prefix").GetString(),
            SysPath = probe.GetProperty("sys_path").EnumerateArray().Select(e => e.GetString()!).ToArray(),
            NumPyVersion = probe.GetProperty("numpy").GetString(),
            TorchVersion = probe.GetProperty("torch").GetString(),
            Source = source,
        };
    }

    // A libpython without an interpreter: find the matching interpreter beside it to learn sys.path and
    // package versions; when there is none, embed the library as it is and report versions as unknown.
    private static PythonInstallation FromLibrary(string library, string source, List<string> searched)
    {
        if (!File.Exists(library))
        {
            searched.Add($"{source}: '{library}' does not exist");
            throw new PythonNotFoundException(searched);
        }
        var match = System.Text.RegularExpressions.Regex.Match(Path.GetFileName(library), @"python(\d)\.?(\d+)");
        if (!match.Success)
        {
            searched.Add($"{source}: '{library}' is not named like a libpython (libpython3.X.so)");
            throw new PythonNotFoundException(searched);
        }
        var version = new Version(int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
                                  int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        CheckVersion(version, library);
        var name = $"python{version.Major}.{version.Minor}";
        var libDir = Path.GetDirectoryName(Path.GetFullPath(library))!;
        var candidates = new[] { Path.Combine(libDir, "..", "bin", name), Path.Combine(libDir, "..", "..", "bin", name) }
            .Where(File.Exists).Select(Path.GetFullPath)
            .Concat(FindOnPath(name, Environment.GetEnvironmentVariable("PATH")) is { } p ? [p] : []);
        foreach (var candidate in candidates)
        {
            try
            {
                var found = FromExecutable(candidate, source, searched);
                if (new Version(found.Version.Major, found.Version.Minor) == version)
                    return found with { LibraryPath = Path.GetFullPath(library) };
            }
            catch (InteropException)
            {
                // Not a usable partner for this library; embed the library alone below.
            }
        }
        return new PythonInstallation { Version = version, LibraryPath = Path.GetFullPath(library), Source = source };
    }

    private static JsonElement RunProbe(string executable, string source, List<string> searched)
    {
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Probe);
        start.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        try
        {
            using var process = Process.Start(start) ?? throw new InvalidOperationException("Process.Start returned null");
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                process.Kill(entireProcessTree: true);
                searched.Add($"{source}: '{executable}' did not answer the probe within 60 s");
                throw new PythonNotFoundException(searched);
            }
            if (process.ExitCode != 0)
            {
                searched.Add($"{source}: '{executable}' failed the probe (exit {process.ExitCode}): {stderr.Result.Trim()}");
                throw new PythonNotFoundException(searched);
            }
            using var doc = JsonDocument.Parse(stdout.Result);
            return doc.RootElement.Clone();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or JsonException or InvalidOperationException)
        {
            searched.Add($"{source}: '{executable}' is not a Python interpreter ({e.Message})");
            throw new PythonNotFoundException(searched);
        }
    }

    private static string? FindOnPath(string name, string? path)
    {
        if (name.Contains(Path.DirectorySeparatorChar, StringComparison.Ordinal))
            return File.Exists(name) ? Path.GetFullPath(name) : null;
        foreach (var dir in (path ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }
}
