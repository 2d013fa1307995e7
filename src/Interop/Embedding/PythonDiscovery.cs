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

    /// <summary>
    /// Finds an interpreter per <paramref name="options"/> and the environment, and checks it can be embedded.
    /// An explicit choice (<see cref="PythonOptions"/>, <c>INTEROP_PYTHON</c>, <c>PYTHONNET_PYDLL</c>, <c>VIRTUAL_ENV</c>)
    /// is final. Otherwise every candidate of <see cref="AutomaticOrder"/> is probed in that order, and the first
    /// with a shared libpython, NumPy and PyTorch is taken; when none has PyTorch, the first with a shared libpython
    /// and NumPy (a NumPy-only user is not refused). <see cref="PythonInstallation.Candidates"/> says what each
    /// candidate lacked and <see cref="PythonInstallation.Reason"/> why the chosen one was taken.
    /// </summary>
    /// <exception cref="PythonNotFoundException">No candidate qualifies; lists each with its reason, and the fixes.</exception>
    /// <exception cref="PythonSharedLibraryNotFoundException">The explicitly chosen interpreter has no shared libpython.</exception>
    /// <exception cref="PythonVersionNotSupportedException">The explicitly chosen interpreter's version is out of range.</exception>
    public static PythonInstallation Find(PythonOptions? options = null) => Find(options, requireSharedLibrary: true);

    /// <summary>
    /// Where the automatic search looks, in order (after the explicit choices): the active conda environment
    /// (<c>CONDA_PREFIX/bin/python</c>), every <c>python3</c> on <c>PATH</c> in <c>PATH</c> order (a pyenv shim is
    /// resolved to the interpreter it runs), <c>python3.13</c> … <c>python3.10</c> on <c>PATH</c>,
    /// <c>/usr/local/bin/python3</c>, <c>/usr/bin/python3</c>, then <c>/usr/local/bin/python3.X</c> and <c>/usr/bin/python3.X</c>.
    /// </summary>
    public static string AutomaticOrder =>
        "CONDA_PREFIX/bin/python, each python3 on PATH, python3.13..python3.10 on PATH, /usr/local/bin/python3, /usr/bin/python3, /usr/local/bin/python3.X, /usr/bin/python3.X";

    /// <summary>As <see cref="Find(PythonOptions?)"/>; isolated workers run a plain interpreter, so they need no shared libpython.</summary>
    internal static PythonInstallation Find(PythonOptions? options, bool requireSharedLibrary)
    {
        options ??= new PythonOptions();
        var searched = new List<string>();
        var env = options.GetEnvironmentVariable;

        if (options.PythonExecutable is { } exe)
            return FromExecutable(exe, "PythonOptions.PythonExecutable", searched, requireSharedLibrary);
        if (options.LibraryPath is { } lib)
            return FromLibrary(lib, "PythonOptions.LibraryPath", searched);
        if (options.VirtualEnvironment is { } venv)
            return FromExecutable(VenvPython(venv), "PythonOptions.VirtualEnvironment", searched, requireSharedLibrary);
        if (env("INTEROP_PYTHON") is { Length: > 0 } interopPython)
            return FromExecutable(interopPython, "INTEROP_PYTHON", searched, requireSharedLibrary);
        if (env("PYTHONNET_PYDLL") is { Length: > 0 } pydll && requireSharedLibrary)
            return FromLibrary(pydll, "PYTHONNET_PYDLL", searched);
        if (env("VIRTUAL_ENV") is { Length: > 0 } active)
            return FromExecutable(VenvPython(active), "VIRTUAL_ENV", searched, requireSharedLibrary);
        return Search(env, options.WellKnownDirectories, requireSharedLibrary);
    }

    // The automatic search: probe candidates in order; the first full one wins, else the first NumPy-only one.
    private static PythonInstallation Search(Func<string, string?> env, IReadOnlyList<string> wellKnownDirectories, bool requireSharedLibrary)
    {
        var candidates = new List<PythonCandidate>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        PythonInstallation? numpyOnly = null;
        foreach (var (path, source) in AutomaticCandidates(env, wellKnownDirectories))
        {
            if (!seen.Add(RealPath(path)))
                continue;
            var (installation, verdict) = Evaluate(path, source, requireSharedLibrary);
            var resolved = installation?.Executable;
            var usable = installation is not null && verdict is null;
            candidates.Add(new PythonCandidate(path, source, resolved, installation?.Version, installation?.NumPyVersion, installation?.TorchVersion,
                usable ? (installation!.TorchVersion is null ? "usable, but no PyTorch" : "usable") : verdict!));
            if (!usable)
                continue;
            if (installation!.TorchVersion is not null)
                return installation with { Candidates = candidates, Reason = "the first candidate in the search order with a shared libpython, NumPy and PyTorch" };
            numpyOnly ??= installation;
        }
        if (numpyOnly is not null)
            return numpyOnly with { Candidates = candidates, Reason = "no candidate has PyTorch; the first with a shared libpython and NumPy" };
        throw new PythonNotFoundException(candidates, requireSharedLibrary);
    }

    private static IEnumerable<(string Path, string Source)> AutomaticCandidates(Func<string, string?> env, IReadOnlyList<string> wellKnownDirectories)
    {
        var windows = OperatingSystem.IsWindows();
        if (env("CONDA_PREFIX") is { Length: > 0 } conda)
            yield return (windows ? Path.Combine(conda, "python.exe") : Path.Combine(conda, "bin", "python"), "CONDA_PREFIX");
        var path = env("PATH");
        foreach (var name in windows ? new[] { "python.exe", "python3.exe" } : ["python3"])
            foreach (var found in AllOnPath(name, path))
                yield return (found, $"{name} on PATH");
        if (windows)
            yield break;
        var minors = Enumerable.Range(MinimumVersion.Minor, MaximumVersion.Minor - MinimumVersion.Minor + 1).Reverse().ToArray();
        foreach (var minor in minors)
            foreach (var found in AllOnPath($"python3.{minor}", path))
                yield return (found, $"python3.{minor} on PATH");
        foreach (var fixedPath in wellKnownDirectories.Select(d => Path.Combine(d, "python3")))
            if (File.Exists(fixedPath))
                yield return (fixedPath, fixedPath);
        foreach (var dir in wellKnownDirectories)
            foreach (var minor in minors)
                if (Path.Combine(dir, $"python3.{minor}") is var versioned && File.Exists(versioned))
                    yield return (versioned, versioned);
    }

    // Probes one candidate; the verdict is null when it qualifies (shared libpython where needed, supported version, NumPy).
    private static (PythonInstallation? Installation, string? Verdict) Evaluate(string path, string source, bool requireSharedLibrary)
    {
        var searched = new List<string>();
        try
        {
            var installation = FromExecutable(path, source, searched, requireSharedLibrary);
            return (installation, installation.NumPyVersion is null ? "no NumPy" + (installation.TorchVersion is null ? " and no PyTorch" : "") : null);
        }
        catch (PythonNotFoundException)
        {
            return (null, searched.Count > 0 ? searched[^1].Replace($"{source}: ", "", StringComparison.Ordinal) : "not a Python interpreter");
        }
        catch (PythonSharedLibraryNotFoundException e)
        {
            return (null, $"Python {e.Version} at {e.Executable} has no shared libpython");
        }
        catch (PythonVersionNotSupportedException e)
        {
            return (null, $"Python {e.Version.ToString(2)} is outside {MinimumVersion.ToString(2)}..{MaximumVersion.ToString(2)}");
        }
    }

    private static string RealPath(string path)
    {
        try
        {
            var full = Path.GetFullPath(path);
            return File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException)
        {
            return Path.GetFullPath(path);
        }
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

    private static PythonInstallation FromExecutable(string executable, string source, List<string> searched, bool requireSharedLibrary = true)
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
        if (library is null && requireSharedLibrary)
        {
            var looked = string.Join(", ", probe.GetProperty("looked").EnumerateArray().Select(e => e.GetString()));
            throw new PythonSharedLibraryNotFoundException(resolved, version.ToString(2), looked);
        }
        // The interpreter itself, not the wrapper that ran it (a pyenv shim execs the real one, which reports itself).
        var real = probe.GetProperty("executable").GetString();
        return new PythonInstallation
        {
            Executable = !string.IsNullOrEmpty(real) && File.Exists(real) ? real : resolved,
            Version = version,
            LibraryPath = library ?? "",
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

    private static IEnumerable<string> AllOnPath(string name, string? path)
    {
        foreach (var dir in (path ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
                yield return Path.GetFullPath(candidate);
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
