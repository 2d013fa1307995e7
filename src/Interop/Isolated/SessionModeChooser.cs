// Design notes: SessionMode.Auto. Two libtorch builds in one process crash (docs/environments.md), so the
// question is whether this process has, or is about to have, a libtorch that Python's torch would not share.
// Nothing here loads anything: the libtorch files mapped into the process come from /proc/self/maps, TorchSharp's
// presence from the loaded assemblies, and Python's torch version from discovery (importlib.metadata in a child).
using Interop.Embedding;

namespace Interop.Isolated;

/// <summary>Decides what <see cref="SessionMode.Auto"/> means in this process.</summary>
public static class SessionModeChooser
{
    /// <summary>The mode <paramref name="mode"/> resolves to here: Auto becomes InProcess or Isolated; the others stay.</summary>
    public static SessionMode Resolve(SessionMode mode, PythonOptions? python = null)
    {
        if (mode != SessionMode.Auto)
            return mode;
        var torchSharpLoaded = AppDomain.CurrentDomain.GetAssemblies().Any(a => a.GetName().Name == "TorchSharp");
        var pythonTorch = torchSharpLoaded || MappedLibTorch().Count > 0 ? TryFindTorchVersion(python) : null;
        return Choose(torchSharpLoaded, MappedLibTorch(), pythonTorch);
    }

    /// <summary>
    /// The rule, as a pure function: isolated when TorchSharp is loaded or a libtorch is mapped into this process,
    /// unless every mapped libtorch is Python's own (<c>…/torch/lib/</c> of a site-packages, the shared setup of
    /// docs/environments.md) and TorchSharp is not loaded with a build of its own.
    /// </summary>
    /// <param name="torchSharpLoaded">The TorchSharp assembly is loaded in this process.</param>
    /// <param name="mappedLibTorch">Paths of libtorch files mapped into this process.</param>
    /// <param name="pythonTorchVersion">Python's torch version (read without importing it); null when not installed.</param>
    public static SessionMode Choose(bool torchSharpLoaded, IReadOnlyCollection<string> mappedLibTorch, string? pythonTorchVersion)
    {
        ArgumentNullException.ThrowIfNull(mappedLibTorch);
        if (mappedLibTorch.Count == 0 && !torchSharpLoaded)
            return SessionMode.InProcess;
        var allPythons = mappedLibTorch.Count > 0 && mappedLibTorch.All(IsPythonTorchLibrary);
        return allPythons && pythonTorchVersion is not null ? SessionMode.InProcess : SessionMode.Isolated;
    }

    /// <summary>The libtorch files (libtorch*.so, libc10.so, libLibTorchSharp.so) mapped into this process (Linux; empty elsewhere).</summary>
    public static IReadOnlyCollection<string> MappedLibTorch()
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps))
            return [];
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines(maps))
        {
            var slash = line.IndexOf('/', StringComparison.Ordinal);
            if (slash < 0)
                continue;
            var path = line[slash..];
            var name = Path.GetFileName(path);
            if (name.StartsWith("libtorch", StringComparison.Ordinal) || name.StartsWith("libc10.", StringComparison.Ordinal) ||
                name.StartsWith("libLibTorchSharp", StringComparison.Ordinal))
                found.Add(path);
        }
        return found;
    }

    private static bool IsPythonTorchLibrary(string path) =>
        path.Contains("/torch/lib/", StringComparison.Ordinal) &&
        (path.Contains("site-packages", StringComparison.Ordinal) || path.Contains("dist-packages", StringComparison.Ordinal));

    private static string? TryFindTorchVersion(PythonOptions? python)
    {
        try
        {
            return PythonRuntime.IsRunning ? PythonRuntime.Installation.TorchVersion : PythonDiscovery.Find(python).TorchVersion;
        }
        catch (Errors.InteropException)
        {
            return null;
        }
    }
}
