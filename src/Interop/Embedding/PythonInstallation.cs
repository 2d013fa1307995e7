namespace Interop.Embedding;

/// <summary>What discovery found: an interpreter, its shared libpython and the versions of NumPy and PyTorch.</summary>
/// <remarks>Package versions are read with <c>importlib.metadata</c> in a child interpreter, without importing them.</remarks>
public sealed record PythonInstallation
{
    /// <summary>The interpreter that was probed; <see langword="null"/> when only a libpython was given.</summary>
    public string? Executable { get; init; }

    /// <summary>The interpreter's version (major.minor.micro).</summary>
    public required Version Version { get; init; }

    /// <summary>The shared libpython that is loaded into the process.</summary>
    public required string LibraryPath { get; init; }

    /// <summary><c>sys.prefix</c> (the virtual environment when there is one).</summary>
    public string? Prefix { get; init; }

    /// <summary><c>sys.base_prefix</c>: the installation the interpreter belongs to.</summary>
    public string? BasePrefix { get; init; }

    /// <summary>The interpreter's <c>sys.path</c>, applied to the embedded interpreter.</summary>
    public IReadOnlyList<string> SysPath { get; init; } = [];

    /// <summary>The installed NumPy version, or <see langword="null"/> when NumPy is not importable.</summary>
    public string? NumPyVersion { get; init; }

    /// <summary>The installed PyTorch version, or <see langword="null"/> when torch is not importable.</summary>
    public string? TorchVersion { get; init; }

    /// <summary>How this installation was chosen, e.g. <c>INTEROP_PYTHON</c> or <c>python3 on PATH</c>.</summary>
    public required string Source { get; init; }

    /// <summary>Why this installation was taken (for the automatic search: which rule chose it); null for explicit choices.</summary>
    public string? Reason { get; init; }

    /// <summary>What the automatic search probed, in order, with each candidate's verdict; empty for explicit choices.</summary>
    public IReadOnlyList<PythonCandidate> Candidates { get; init; } = [];

    /// <summary>True when the interpreter runs inside a virtual environment.</summary>
    public bool IsVirtualEnvironment => Prefix is not null && BasePrefix is not null && Prefix != BasePrefix;

    /// <summary>Throws <see cref="Errors.PythonPackageMissingException"/> unless <paramref name="package"/> (<c>numpy</c> or <c>torch</c>) is installed.</summary>
    /// <remarks>When only a libpython was given (no interpreter to probe), versions are unknown and the import itself decides.</remarks>
    public void Require(string package)
    {
        var version = package switch
        {
            "numpy" => NumPyVersion,
            "torch" => TorchVersion,
            _ => throw new ArgumentException($"unknown package '{package}'; expected numpy or torch", nameof(package)),
        };
        if (version is null && Executable is not null)
            throw new Errors.PythonPackageMissingException(package, Executable,
                Candidates.Where(c => c.Executable is not null && c.Executable != Executable && (package == "numpy" ? c.NumPyVersion : c.TorchVersion) is not null)
                          .Select(c => c.Executable!).Distinct().ToArray());
    }

    /// <summary>A one-paragraph, human-readable summary.</summary>
    public override string ToString() =>
        $"Python {Version} ({Source}): interpreter {Executable ?? "(none)"}, libpython {LibraryPath}, " +
        $"NumPy {NumPyVersion ?? "not installed"}, PyTorch {TorchVersion ?? "not installed"}" +
        (IsVirtualEnvironment ? $", virtual environment {Prefix}" : "");
}

/// <summary>One interpreter the automatic search probed (see <see cref="PythonDiscovery.AutomaticOrder"/>).</summary>
/// <param name="Path">Where it was found.</param>
/// <param name="Source">Which rule of the search order found it (e.g. <c>python3 on PATH</c>, <c>/usr/bin/python3</c>).</param>
/// <param name="Executable">The interpreter that actually ran (a pyenv shim resolved to its real interpreter); null when it did not run.</param>
/// <param name="Version">Its Python version, when it ran.</param>
/// <param name="NumPyVersion">Its NumPy version, or null when NumPy is not installed for it.</param>
/// <param name="TorchVersion">Its PyTorch version, or null when PyTorch is not installed for it.</param>
/// <param name="Verdict"><c>usable</c>, <c>usable, but no PyTorch</c>, or what disqualified it.</param>
public sealed record PythonCandidate(string Path, string Source, string? Executable, Version? Version, string? NumPyVersion, string? TorchVersion, string Verdict)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{Path} ({Source}{(Executable is not null && Executable != Path ? $", runs {Executable}" : "")}): {Verdict}";
}
