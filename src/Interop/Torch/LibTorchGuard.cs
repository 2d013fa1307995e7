// Design notes: one libtorch per process (docs/torchsharp.md; measured: two libtorch builds in one process
// crash in their static initialisers, in either load order). The check loads nothing: it reads which
// libtorch files are mapped (/proc/self/maps) and Python torch's version from the discovery probe
// (importlib.metadata, in a child process). Core cannot reference TorchSharp, so Interop.TorchSharp
// registers itself here (RegisterForeignLoader) before its first native call; the core check also works
// without that registration (a libtorch mapped from anywhere but Python torch's own files is foreign).
// The one caller on the Python side is TorchTensor.Import, the single place that imports torch.
using Interop.Embedding;
using Interop.Errors;
using Python.Runtime;

namespace Interop.Torch;

/// <summary>Keeps two different libtorch builds out of one process: checks before Python's <c>torch</c> is imported.</summary>
public static class LibTorchGuard
{
    private static readonly string[] s_libraryNames = ["libtorch_cpu.so", "libtorch.so", "libc10.so", "libtorch_cuda.so", "libc10_cuda.so"];
    private static volatile ForeignLoader? s_foreign;

    private sealed record ForeignLoader(string Description, string? LibTorchVersion, string? SharedDirectory);

    /// <summary>
    /// Called by a library that is about to load its own libtorch in this process (Interop.TorchSharp does, before its
    /// first native call), so a later import of Python torch is refused with both versions named.
    /// </summary>
    /// <param name="description">What loads libtorch, e.g. <c>TorchSharp 0.107.0 (libtorch 2.10.0)</c>.</param>
    /// <param name="libTorchVersion">The libtorch version it loads.</param>
    /// <param name="sharedDirectory">For the shared setup: the Python torch <c>lib</c> folder it loads libtorch from; otherwise null.</param>
    public static void RegisterForeignLoader(string description, string? libTorchVersion, string? sharedDirectory)
    {
        ArgumentNullException.ThrowIfNull(description);
        s_foreign = new ForeignLoader(description, libTorchVersion, sharedDirectory);
    }

    /// <summary>What registered itself as loading its own libtorch here (version, shared torch/lib folder), if anything. For SessionMode.Auto.</summary>
    internal static (string Description, string? LibTorchVersion, string? SharedDirectory)? ForeignLoaderInfo =>
        s_foreign is { } f ? (f.Description, f.LibTorchVersion, f.SharedDirectory) : null;

    /// <summary>The libtorch files (libtorch, libtorch_cpu, libc10, ...) mapped into this process, by real path. Empty where /proc/self/maps does not exist.</summary>
    public static IReadOnlyList<string> MappedLibTorchFiles()
    {
        const string maps = "/proc/self/maps";
        return File.Exists(maps) ? FindLibTorchPaths(File.ReadLines(maps)) : [];
    }

    /// <summary>The distinct libtorch paths in the lines of a <c>/proc/PID/maps</c> file.</summary>
    public static IReadOnlyList<string> FindLibTorchPaths(IEnumerable<string> mapsLines)
    {
        ArgumentNullException.ThrowIfNull(mapsLines);
        var found = new List<string>();
        foreach (var line in mapsLines)
        {
            // address perms offset dev inode [path]; the path may contain spaces.
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6)
                continue;
            var path = fields[5].Trim();
            if (path.StartsWith('/') && IsLibTorchLibrary(Path.GetFileName(path)) && !found.Contains(path))
                found.Add(path);
        }
        return found;
    }

    /// <summary>True for libtorch's core shared libraries (<c>libtorch_cpu.so</c>, <c>libc10.so.2.6</c>, ...), not for helpers such as <c>libtorch_python.so</c>.</summary>
    public static bool IsLibTorchLibrary(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        return s_libraryNames.Any(n => fileName == n || fileName.StartsWith(n + ".", StringComparison.Ordinal));
    }

    /// <summary>
    /// The release (major.minor.patch) of a PyTorch or libtorch version string: <c>2.6.0+debian</c>, <c>2.10.0+cpu</c>,
    /// <c>2.10.0a0+git1234</c>, <c>2.10</c> (patch 0). Null when the string does not start with a version.
    /// </summary>
    public static Version? ParseRelease(string? version)
    {
        if (string.IsNullOrWhiteSpace(version))
            return null;
        var parts = new int[3];
        var index = 0;
        var i = 0;
        var s = version.Trim();
        if (s.StartsWith('v'))
            i++;
        while (index < 3)
        {
            var start = i;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
                i++;
            if (i == start || !int.TryParse(s.AsSpan(start, i - start), System.Globalization.CultureInfo.InvariantCulture, out parts[index]))
                return index >= 2 ? new Version(parts[0], parts[1], 0) : null;
            index++;
            if (i < s.Length && s[i] == '.' && index < 3)
                i++;
            else
                break;
        }
        return index >= 2 ? new Version(parts[0], parts[1], index == 3 ? parts[2] : 0) : null;
    }

    /// <summary>True when both strings name the same libtorch release (local and pre-release suffixes ignored).</summary>
    public static bool SameRelease(string? a, string? b) => ParseRelease(a) is { } x && ParseRelease(b) is { } y && x == y;

    /// <summary>The version in a versioned library file name (<c>libtorch_cpu.so.2.6.0</c> gives 2.6.0), else null.</summary>
    public static string? VersionFromFileName(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var name = Path.GetFileName(path);
        var at = name.IndexOf(".so.", StringComparison.Ordinal);
        return at < 0 ? null : ParseRelease(name[(at + 4)..])?.ToString();
    }

    /// <summary>
    /// True when <paramref name="path"/> is one of Python torch's own libraries: a file under the package folder or the
    /// real path of a file in its <c>lib</c> folder (Debian's <c>torch/lib</c> holds symbolic links into /usr/lib).
    /// </summary>
    public static bool BelongsToPythonTorch(string path, string? torchPackageDirectory)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (torchPackageDirectory is null)
            return false;
        var root = Path.GetFullPath(torchPackageDirectory).TrimEnd('/') + "/";
        if (path.StartsWith(root, StringComparison.Ordinal))
            return true;
        var lib = Path.Combine(torchPackageDirectory, "lib");
        if (!Directory.Exists(lib))
            return false;
        return Directory.EnumerateFiles(lib).Any(f => string.Equals(RealPath(f), path, StringComparison.Ordinal));
    }

    /// <summary>The real path of a file (symbolic links followed), or the full path when it is not a link.</summary>
    public static string RealPath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        try
        {
            return new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
        }
        catch (IOException)
        {
            return Path.GetFullPath(path);
        }
    }

    /// <summary>
    /// Python torch's package folder, found with <c>importlib.util.find_spec</c> (which does not import it); null when not
    /// installed. Requires the GIL.
    /// </summary>
    internal static string? PythonTorchPackageDirectory()
    {
        Gil.AssertHeld();
        using var util = Py.Import("importlib.util");
        using var name = new PyString("torch");
        using var spec = util.InvokeMethod("find_spec", name);
        if (spec.IsNone())
            return null;
        using var locations = spec.GetAttr("submodule_search_locations");
        if (locations.IsNone())
            return null;
        using var first = locations.GetItem(0);
        return first.As<string>();
    }

    /// <summary>True when Python's <c>torch</c> module is in <c>sys.modules</c>. Requires the GIL.</summary>
    internal static bool IsPythonTorchImported()
    {
        Gil.AssertHeld();
        using var sys = Py.Import("sys");
        using var modulesObject = sys.GetAttr("modules");
        using var modules = new PyDict(modulesObject);
        return modules.HasKey("torch");
    }

    /// <summary>
    /// Refuses to import Python torch when another libtorch is mapped in this process. Called (with the GIL) by the one
    /// place that imports torch; does nothing once torch is imported.
    /// </summary>
    /// <exception cref="LibTorchConflictException">A libtorch other than Python torch's own is loaded.</exception>
    internal static void CheckBeforeImportingPythonTorch()
    {
        if (IsPythonTorchImported())
            return;
        var mapped = MappedLibTorchFiles();
        if (mapped.Count == 0)
            return;
        var torchDirectory = PythonTorchPackageDirectory();
        var foreign = mapped.Where(p => !BelongsToPythonTorch(p, torchDirectory)).ToList();
        if (foreign.Count == 0)
            return;
        var loader = s_foreign;
        var pythonVersion = PythonRuntime.Installation.TorchVersion;
        throw new LibTorchConflictException(
            $"Cannot import Python torch {pythonVersion ?? "(version unknown)"}: {loader?.Description ?? "another libtorch"} is already loaded in this process (mapped from {foreign[0]})",
            pythonVersion, loader?.LibTorchVersion ?? VersionFromFileName(foreign[0]));
    }
}
