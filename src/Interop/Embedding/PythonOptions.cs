namespace Interop.Embedding;

/// <summary>
/// Where to find Python. Every member is optional; unset members fall back, in this order, to:
/// <see cref="PythonExecutable"/> / <see cref="LibraryPath"/> / <see cref="VirtualEnvironment"/> given here,
/// the <c>INTEROP_PYTHON</c> variable (an interpreter), <c>PYTHONNET_PYDLL</c> (a libpython),
/// an active virtual environment (<c>VIRTUAL_ENV</c>); those choices are final. Otherwise the automatic search
/// (<see cref="PythonDiscovery.AutomaticOrder"/>) takes the first candidate with a shared libpython, NumPy and PyTorch,
/// or, when none has PyTorch, the first with a shared libpython and NumPy.
/// </summary>
public sealed record PythonOptions
{
    /// <summary>The interpreter to embed (its shared libpython is found through <c>sysconfig</c>).</summary>
    public string? PythonExecutable { get; init; }

    /// <summary>The libpython to load, when it cannot be derived from an interpreter.</summary>
    public string? LibraryPath { get; init; }

    /// <summary>A virtual environment's directory; its <c>bin/python</c> is used and its site-packages are on <c>sys.path</c>.</summary>
    public string? VirtualEnvironment { get; init; }

    /// <summary>
    /// Extra directories (or .zip archives) put at the front of <c>sys.path</c>: in this process's interpreter, and in
    /// isolated workers (through <c>PYTHONPATH</c>) when given as <see cref="Isolated.WorkerOptions.Python"/>.
    /// Each must exist: a missing one is a <see cref="DirectoryNotFoundException"/> at start-up, not a later
    /// <c>ModuleNotFoundError</c>. Relative paths are taken from the working directory.
    /// </summary>
    public IReadOnlyList<string> AdditionalPaths { get; init; } = [];

    /// <summary>
    /// The directory that contains the <c>interop_helpers</c> package. Default: <c>python/</c> next to this assembly
    /// (where the build and a NuGet package put it), else the repository's <c>python/</c> folder found upwards.
    /// </summary>
    public string? HelperPackageDirectory { get; init; }

    /// <summary>The fixed folders the automatic search looks in after PATH (tests substitute them).</summary>
    internal IReadOnlyList<string> WellKnownDirectories { get; init; } = ["/usr/local/bin", "/usr/bin"];

    /// <summary>The process environment, read through this hook so that tests can substitute it.</summary>
    internal Func<string, string?> GetEnvironmentVariable { get; init; } = Environment.GetEnvironmentVariable;
}
