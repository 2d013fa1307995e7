// Design notes: the Python helper package (python/interop_helpers) is part of the library. The build writes its
// _version.py from the library's version and records the same version in this assembly (AssemblyMetadata
// "InteropHelperVersion"); Locate compares the two before Python starts, so a missing or stale helper folder is a
// typed error at start-up (HelperPackageException) instead of a ModuleNotFoundError at the first call.
// Files only: nothing here loads Python. No Assembly.Location (empty in single-file apps): AppContext.BaseDirectory.
using System.Reflection;
using System.Text.RegularExpressions;
using Interop.Errors;

namespace Interop.Embedding;

/// <summary>Finds and checks the <c>interop_helpers</c> package both session kinds put on Python's path.</summary>
internal static partial class HelperFiles
{
    /// <summary>The version this assembly expects (the library's version, from the build).</summary>
    internal static string ExpectedVersion { get; } =
        typeof(HelperFiles).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "InteropHelperVersion")?.Value ?? "unknown";

    /// <summary>The files every helper package must contain (the rest are checked by Python when imported).</summary>
    private static readonly string[] s_required = ["__init__.py", "_version.py", "calls.py", "worker.py", "protocol.py", "torch_export.py", "exports.py", "dtypes.py"];

    /// <summary>
    /// The folder that contains <c>interop_helpers/</c>: <see cref="PythonOptions.HelperPackageDirectory"/> when set,
    /// else <c>python/</c> beside the application (<see cref="AppContext.BaseDirectory"/>), where the build and the
    /// NuGet package put it.
    /// </summary>
    /// <exception cref="HelperPackageException">Missing, incomplete, or of another version.</exception>
    internal static string Locate(PythonOptions? options)
    {
        var directory = options?.HelperPackageDirectory is { } given
            ? Path.GetFullPath(given)
            : Path.Combine(AppContext.BaseDirectory, "python");
        Check(directory);
        return directory;
    }

    /// <summary>Throws <see cref="HelperPackageException"/> unless <paramref name="directory"/> holds this version's helper package.</summary>
    internal static void Check(string directory)
    {
        var package = Path.Combine(directory, PythonRuntime.HelperPackage);
        if (!Directory.Exists(package))
            throw new HelperPackageException($"The Python helper package '{PythonRuntime.HelperPackage}' of the Interop library is missing.", directory, null, ExpectedVersion);
        var missing = s_required.Where(f => !File.Exists(Path.Combine(package, f))).ToArray();
        var found = ReadVersion(Path.Combine(package, "_version.py"));
        if (missing.Length > 0)
            throw new HelperPackageException($"The Python helper package at '{package}' is incomplete (missing {string.Join(", ", missing)}).", directory, found, ExpectedVersion);
        if (found != ExpectedVersion)
            throw new HelperPackageException($"The Python helper package at '{package}' is version {found ?? "(unreadable)"}, from another version of the Interop library than this one ({ExpectedVersion}).", directory, found, ExpectedVersion);
    }

    private static string? ReadVersion(string file)
    {
        try
        {
            var match = VersionLine().Match(File.ReadAllText(file));
            return match.Success ? match.Groups[1].Value : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    [GeneratedRegex("""^version\s*=\s*["']([^"']+)["']""", RegexOptions.Multiline)]
    private static partial Regex VersionLine();
}
