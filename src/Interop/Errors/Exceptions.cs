namespace Interop.Errors;

/// <summary>The base of every exception this library throws on purpose.</summary>
public class InteropException : Exception
{
    /// <summary>Creates the exception with a message that names the problem and the fix.</summary>
    public InteropException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public InteropException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>No usable CPython interpreter was found where the runtime looked.</summary>
public sealed class PythonNotFoundException : InteropException
{
    /// <summary>Creates the exception; <paramref name="searched"/> lists each place that was tried.</summary>
    public PythonNotFoundException(IReadOnlyList<string> searched)
        : base("No Python interpreter was found. Looked at: " + string.Join("; ", searched) + ". " +
               "Fix: install CPython 3.10 or later (Debian/Ubuntu: apt-get install python3 libpython3-dev), " +
               "or point the runtime at one with PythonOptions.PythonExecutable, the INTEROP_PYTHON variable, " +
               "PYTHONNET_PYDLL (a libpython path) or an activated virtual environment.")
    {
        Searched = searched;
        Candidates = [];
    }

    /// <summary>Creates the exception after the automatic search found no candidate that qualifies.</summary>
    public PythonNotFoundException(IReadOnlyList<Embedding.PythonCandidate> candidates, bool requireSharedLibrary)
        : base(CandidatesMessage(candidates, requireSharedLibrary))
    {
        Candidates = candidates;
        Searched = candidates.Count > 0 ? candidates.Select(c => c.ToString()).ToArray() : ["no candidate exists; searched " + Embedding.PythonDiscovery.AutomaticOrder];
    }

    /// <summary>Each location that was tried, with what was found there.</summary>
    public IReadOnlyList<string> Searched { get; }

    /// <summary>The candidates of the automatic search, in order, each with what disqualified it (empty for an explicit choice).</summary>
    public IReadOnlyList<Embedding.PythonCandidate> Candidates { get; }

    private static string CandidatesMessage(IReadOnlyList<Embedding.PythonCandidate> candidates, bool requireSharedLibrary)
    {
        var b = new System.Text.StringBuilder();
        b.Append("No usable Python interpreter was found: Interop needs CPython ")
         .Append(Embedding.PythonDiscovery.MinimumVersion.ToString(2)).Append("..").Append(Embedding.PythonDiscovery.MaximumVersion.ToString(2))
         .Append(requireSharedLibrary ? " with a shared libpython and NumPy (PyTorch for tensors)." : " with NumPy (PyTorch for tensors).");
        if (candidates.Count == 0)
            b.Append(" No candidate exists (searched ").Append(Embedding.PythonDiscovery.AutomaticOrder).Append(").");
        else
        {
            b.Append(" Candidates, in search order:");
            foreach (var c in candidates)
                b.Append("\n  - ").Append(c);
        }
        b.Append("\nFixes (any one):")
         .Append("\n  - point Interop at an interpreter that has them: INTEROP_PYTHON=/path/to/python3 (or PythonOptions.PythonExecutable);")
         .Append("\n  - a virtual environment: python3 -m venv --system-site-packages ~/.venvs/interop && ~/.venvs/interop/bin/python -m pip install numpy torch, then activate it (VIRTUAL_ENV) or set PythonOptions.VirtualEnvironment;");
        foreach (var c in candidates.Where(c => c.Executable is not null && c.Version is not null).DistinctBy(c => c.Executable))
        {
            var missing = new List<string>();
            if (c.NumPyVersion is null)
                missing.Add("numpy");
            if (c.TorchVersion is null)
                missing.Add("torch");
            if (missing.Count > 0)
                b.Append("\n  - install the missing packages for ").Append(c.Executable).Append(": ").Append(PythonPackageMissingException.InstallCommand(c.Executable!, c.Version!, missing)).Append(';');
        }
        foreach (var c in candidates.Where(c => c.Verdict.Contains("no shared libpython", StringComparison.Ordinal)))
            b.Append("\n  - or give ").Append(c.Path).Append(" its shared libpython: ")
             .Append(c.Path.StartsWith("/usr/bin/", StringComparison.Ordinal) ? "apt-get install libpython3.X (X: its minor version)" : "rebuild it with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install VERSION)").Append(';');
        return b.ToString();
    }
}

/// <summary>The interpreter exists but has no shared libpython to embed (a static build).</summary>
public sealed class PythonSharedLibraryNotFoundException : InteropException
{
    /// <summary>Creates the exception for <paramref name="executable"/> (Python <paramref name="version"/>).</summary>
    public PythonSharedLibraryNotFoundException(string executable, string version, string looked)
        : base($"Python {version} at '{executable}' has no shared libpython (looked for {looked}). Embedding needs " +
               $"libpython{version}.so. Fix: on Debian/Ubuntu apt-get install libpython{version}; with pyenv rebuild " +
               "with PYTHON_CONFIGURE_OPTS=--enable-shared; or choose another interpreter (PythonOptions.PythonExecutable / INTEROP_PYTHON).")
    {
        Executable = executable;
        Version = version;
    }

    /// <summary>The interpreter that was probed.</summary>
    public string Executable { get; }

    /// <summary>Its version (major.minor).</summary>
    public string Version { get; }
}

/// <summary>The interpreter's version is outside the range this library supports.</summary>
public sealed class PythonVersionNotSupportedException : InteropException
{
    /// <summary>Creates the exception for <paramref name="version"/>.</summary>
    public PythonVersionNotSupportedException(Version version, string where, Version minimum, Version maximum)
        : base($"Python {version.ToString(2)} at '{where}' is not supported: Interop embeds CPython " +
               $"{minimum.ToString(2)} to {maximum.ToString(2)}. Fix: install a supported CPython and point the runtime at it " +
               "(PythonOptions.PythonExecutable or INTEROP_PYTHON).")
    {
        Version = version;
    }

    /// <summary>The version that was found.</summary>
    public Version Version { get; }
}

/// <summary>A Python package the operation needs (numpy, torch) is not importable by the embedded interpreter.</summary>
public sealed class PythonPackageMissingException : InteropException
{
    /// <summary>Creates the exception for <paramref name="package"/> missing from <paramref name="executable"/>.</summary>
    /// <param name="package">The import name (numpy, torch).</param>
    /// <param name="executable">The interpreter that lacks it.</param>
    /// <param name="havingIt">Other interpreters the search found that do have it (named as a fix).</param>
    public PythonPackageMissingException(string package, string? executable, IReadOnlyList<string>? havingIt = null)
        : base($"The Python package '{package}' is not installed for {executable ?? "the embedded Python"}. Fix: " +
               (havingIt is { Count: > 0 } ? $"use an interpreter that has it: INTEROP_PYTHON={havingIt[0]} (or PythonOptions.PythonExecutable); or " : "") +
               $"install it: {InstallCommand(executable ?? "python3", null, [package])}; or point INTEROP_PYTHON / PythonOptions.PythonExecutable " +
               "at another interpreter, or activate a virtual environment that has it.")
    {
        Package = package;
    }

    /// <summary>The import name of the missing package.</summary>
    public string Package { get; }

    /// <summary>
    /// The command that installs <paramref name="packages"/> for <paramref name="executable"/>: Debian's packages for the
    /// system interpreter under /usr/bin (where apt-get exists), pip for every other interpreter (a venv, pyenv, conda).
    /// </summary>
    internal static string InstallCommand(string executable, Version? version, IReadOnlyList<string> packages)
    {
        _ = version;
        var system = executable.StartsWith("/usr/bin/", StringComparison.Ordinal) && File.Exists("/usr/bin/apt-get");
        return system
            ? "apt-get install --no-install-recommends " + string.Join(' ', packages.Select(p => "python3-" + p))
            : $"{executable} -m pip install " + string.Join(' ', packages.Select(PipName));
    }

    private static string PipName(string package) => package switch
    {
        "numpy" => "\"numpy>=1.24\"",
        "torch" => "\"torch>=1.13\"",
        _ => package,
    };
}

/// <summary>Python raised an exception; carries its type name, message and traceback.</summary>
public sealed class PythonErrorException : InteropException
{
    /// <summary>Creates the exception from the parts of a Python exception.</summary>
    public PythonErrorException(string pythonType, string pythonMessage, string traceback, Exception? inner = null)
        : this(pythonType, pythonMessage, traceback, inner, null)
    {
    }

    /// <summary>Creates the exception with a <paramref name="hint"/> from the .NET side (e.g. which .NET type made an argument's dtype).</summary>
    internal PythonErrorException(string pythonType, string pythonMessage, string traceback, Exception? inner, string? hint)
        : base($"{pythonType}: {pythonMessage}" + (hint is null ? "" : Environment.NewLine + "Hint: " + hint), inner)
    {
        PythonType = pythonType;
        PythonMessage = pythonMessage;
        PythonTraceback = traceback;
        Hint = hint;
    }

    /// <summary>What the .NET side adds to the Python error (null when nothing): e.g. that a dtype came from a C# <c>double</c>.</summary>
    public string? Hint { get; }

    /// <summary>The exception's qualified Python type name, e.g. <c>ValueError</c> or <c>numpy.linalg.LinAlgError</c>.</summary>
    public string PythonType { get; }

    /// <summary><c>str(exception)</c>.</summary>
    public string PythonMessage { get; }

    /// <summary>The formatted Python traceback (<c>traceback.format_exception</c>), most recent call last.</summary>
    public string PythonTraceback { get; }

    /// <inheritdoc/>
    public override string ToString() => base.ToString() + Environment.NewLine + "Python traceback:" + Environment.NewLine + PythonTraceback;
}

/// <summary>
/// The Python helper package (<c>python/interop_helpers</c>, which the library's NuGet package puts beside the
/// application's assembly) is missing, incomplete, or from another version of the library. Thrown at start-up
/// (<c>PythonRuntime.Initialize</c>, a session's creation or its first worker), never at first use.
/// </summary>
public sealed class HelperPackageException : InteropException
{
    /// <summary>Creates the exception for the helper folder expected at <paramref name="expectedDirectory"/>.</summary>
    public HelperPackageException(string problem, string expectedDirectory, string? foundVersion, string expectedVersion)
        : base($"{problem} Expected: {Path.Combine(expectedDirectory, "interop_helpers")} (version {expectedVersion}). Fix: " +
               "reference the Interop package normally (dotnet add package Interop; do not exclude its contentFiles assets) " +
               "and rebuild, so the build copies python/interop_helpers beside your assembly; when you deploy by hand, copy " +
               "the python/ folder of the build output with the application; or point PythonOptions.HelperPackageDirectory " +
               "at a python/ folder of this very version.")
    {
        ExpectedDirectory = expectedDirectory;
        FoundVersion = foundVersion;
        ExpectedVersion = expectedVersion;
    }

    /// <summary>The folder that should contain <c>interop_helpers/</c>.</summary>
    public string ExpectedDirectory { get; }

    /// <summary>The helper package's version found there, or <see langword="null"/> when none was readable.</summary>
    public string? FoundVersion { get; }

    /// <summary>The version this assembly was built with.</summary>
    public string ExpectedVersion { get; }
}
