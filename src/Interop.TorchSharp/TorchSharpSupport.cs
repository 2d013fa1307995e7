// Design notes: whether TorchSharp can run in this process, decided before TorchSharp's native code loads.
// - TorchSharp 0.107's libLibTorchSharp.so needs GLIBCXX_3.4.32 (GCC 13+ libstdc++); on older systems the first
//   TorchSharp call fails with a misleading "doesn't contain a reference to libtorch" message, so the libstdc++
//   check runs first and names the real cause.
// - One libtorch per process: EnsureLoadable (called by every entry point of this library before its first
//   TorchSharp call) refuses when Python torch is imported or another libtorch is mapped (/proc/self/maps),
//   and registers TorchSharp with core's LibTorchGuard so a later `import torch` through the library is refused.
// - Shared setup: UseSharedLibTorch loads Python torch's own libc10/libtorch_cpu/libtorch before TorchSharp, so
//   libLibTorchSharp binds to them by soname (TorchSharp's documented way to use a Python install's libtorch).
//   Allowed only when Python torch's release equals TorchSharp's libtorch release.
// - Versions are read without loading anything: TorchSharp's assembly metadata, the application's deps.json
//   (libtorch-cpu-*/VERSION package), Python torch's importlib.metadata version from discovery.
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Interop.Embedding;
using Interop.Errors;
using Interop.Torch;

namespace Interop.TorchSharp;

/// <summary>Checks that TorchSharp can load here (and may: one libtorch per process), and says why not.</summary>
public static class TorchSharpSupport
{
    /// <summary>The libstdc++ symbol version TorchSharp 0.107's native library requires.</summary>
    public const string RequiredGlibcxx = "GLIBCXX_3.4.32";

    /// <summary>The libtorch release TorchSharp 0.107 is built against; used only when the deps.json does not say.</summary>
    public const string BuiltAgainstLibTorch = "2.10.0";

    /// <summary>The libraries the shared setup loads from Python torch's <c>lib</c> folder, in dependency order.</summary>
    public static IReadOnlyList<string> SharedLibraryNames { get; } = ["libc10.so", "libtorch_cpu.so", "libtorch.so"];

    private static readonly Lock s_lock = new();
    private static readonly Lazy<(string? Path, bool Ok)> s_libstdcxx = new(ReadLibStdCxx);
    private static readonly Lazy<(string Version, string Source)> s_libtorch = new(FindLibTorchVersion);
    private static volatile bool s_loaded;
    private static string? s_unavailable;
    private static string? s_sharedDirectory;

    /// <summary>TorchSharp's version (its assembly's informational version, e.g. <c>0.107.0</c>).</summary>
    public static string TorchSharpVersion { get; } =
        typeof(global::TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(global::TorchSharp.torch).Assembly.GetName().Version?.ToString(3) ?? "unknown";

    /// <summary>The libtorch version TorchSharp loads: the libtorch package in the application's deps.json, else <see cref="BuiltAgainstLibTorch"/>.</summary>
    public static string LibTorchVersion => s_libtorch.Value.Version;

    /// <summary>Where <see cref="LibTorchVersion"/> came from (<c>deps.json: libtorch-cpu-linux-x64</c> or <c>TorchSharp 0.107 release</c>).</summary>
    public static string LibTorchVersionSource => s_libtorch.Value.Source;

    /// <summary>The directory of Python torch's libtorch that TorchSharp uses (shared setup), or null for TorchSharp's own.</summary>
    public static string? SharedLibTorchDirectory => s_sharedDirectory;

    /// <summary>True once TorchSharp loaded and ran a tensor operation in this process.</summary>
    public static bool IsLoaded => s_loaded;

    /// <summary>True when TorchSharp can run in this process (loading it if it is not loaded yet).</summary>
    public static bool IsAvailable => Problem is null;

    /// <summary>Why TorchSharp cannot run in this process (null when it can). Loads TorchSharp if allowed and not loaded yet.</summary>
    public static string? Problem
    {
        get
        {
            try
            {
                EnsureLoadable();
                return null;
            }
            catch (InteropException e)
            {
                return e.Message;
            }
        }
    }

    /// <summary>
    /// Loads TorchSharp unless it would break the process: checks libstdc++, refuses when Python torch (or any other
    /// libtorch) is already in the process, registers with <see cref="LibTorchGuard"/>, then runs a tiny tensor operation.
    /// Every entry point of this library calls it; call it yourself before using TorchSharp directly.
    /// </summary>
    /// <exception cref="TorchSharpUnavailableException">TorchSharp's native library cannot load here.</exception>
    /// <exception cref="LibTorchConflictException">Python torch or another libtorch is already loaded in this process.</exception>
    public static void EnsureLoadable()
    {
        if (s_loaded)
            return;
        lock (s_lock)
        {
            if (s_loaded)
                return;
            if (s_unavailable is { } known)
                throw new TorchSharpUnavailableException(known);
            var (path, ok) = s_libstdcxx.Value;
            if (!ok)
            {
                s_unavailable = $"TorchSharp {TorchSharpVersion} needs {RequiredGlibcxx} (libstdc++ from GCC 13+), but {path ?? "this system's libstdc++"} lacks it " +
                                "(Debian 12 ships GCC 12). Use a newer system (Debian 13, Ubuntu 24.04+, Fedora 39+) or ./interop.sh's debian13 environment.";
                throw new TorchSharpUnavailableException(s_unavailable);
            }
            CheckNoOtherLibTorch();
            LibTorchGuard.RegisterForeignLoader($"TorchSharp {TorchSharpVersion} (libtorch {LibTorchVersion})", LibTorchVersion, s_sharedDirectory);
            if (s_sharedDirectory is { } shared)
            {
                foreach (var library in ResolveSharedLibraries(shared))
                {
                    try
                    {
                        NativeLibrary.Load(library);
                    }
                    catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                    {
                        throw new TorchSharpUnavailableException($"The shared setup could not load {library}: {e.Message}", e);
                    }
                }
            }
            try
            {
                using var probe = global::TorchSharp.torch.ones(2);
                using var sum = probe.sum();
                if (sum.item<float>() != 2)
                    s_unavailable = "TorchSharp loaded but computed a wrong result";
            }
            catch (Exception e) when (e is NotSupportedException or TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or ExternalException)
            {
                s_unavailable = $"TorchSharp could not load its native library: {e.Message}";
            }
            if (s_unavailable is not null)
                throw new TorchSharpUnavailableException(s_unavailable);
            s_loaded = true;
        }
    }

    /// <summary>
    /// The shared setup: TorchSharp will use Python torch's own libtorch (from <paramref name="torchLibDirectory"/>, by default
    /// the <c>lib</c> folder of the torch package the embedded Python finds), so PyTorch and TorchSharp can live in one
    /// process. Call before any TorchSharp use. Nothing is loaded here; <see cref="EnsureLoadable"/> loads the libraries.
    /// </summary>
    /// <exception cref="LibTorchConflictException">Python torch's release differs from TorchSharp's libtorch (the only case on Debian's torch 2.6).</exception>
    /// <exception cref="TorchSharpUnavailableException">The folder lacks one of <see cref="SharedLibraryNames"/>.</exception>
    /// <exception cref="InvalidOperationException">TorchSharp is already loaded with its own libtorch.</exception>
    public static void UseSharedLibTorch(string? torchLibDirectory = null)
    {
        var pythonVersion = PythonRuntime.Installation.TorchVersion;
        if (SharingProblem(pythonVersion, LibTorchVersion) is { } problem)
            throw new LibTorchConflictException($"The shared setup cannot be used: {problem}", pythonVersion, LibTorchVersion);
        lock (s_lock)
        {
            if (s_loaded)
                throw new InvalidOperationException("TorchSharp is already loaded in this process with its own libtorch; call UseSharedLibTorch before any TorchSharp use.");
            var directory = torchLibDirectory ?? PythonRuntime.Run(() =>
                LibTorchGuard.PythonTorchPackageDirectory() is { } package ? Path.Combine(package, "lib") : null)
                ?? throw new PythonPackageMissingException("torch", PythonRuntime.Installation.Executable);
            ResolveSharedLibraries(directory);
            s_sharedDirectory = Path.GetFullPath(directory);
        }
    }

    /// <summary>Why Python torch <paramref name="pythonTorchVersion"/> and TorchSharp's libtorch cannot share a process, or null when they can (same release).</summary>
    public static string? SharingProblem(string? pythonTorchVersion, string? libTorchVersion)
    {
        if (pythonTorchVersion is null)
            return "Python torch is not installed";
        if (LibTorchGuard.ParseRelease(pythonTorchVersion) is null || LibTorchGuard.ParseRelease(libTorchVersion) is null)
            return $"cannot compare the versions '{pythonTorchVersion}' and '{libTorchVersion}'";
        return LibTorchGuard.SameRelease(pythonTorchVersion, libTorchVersion) ? null
            : $"Python torch {pythonTorchVersion} is not the release of TorchSharp's libtorch {libTorchVersion}";
    }

    /// <summary>The full paths of <see cref="SharedLibraryNames"/> in <paramref name="torchLibDirectory"/>, in load order.</summary>
    /// <exception cref="TorchSharpUnavailableException">One of them is missing.</exception>
    public static IReadOnlyList<string> ResolveSharedLibraries(string torchLibDirectory)
    {
        ArgumentNullException.ThrowIfNull(torchLibDirectory);
        var paths = SharedLibraryNames.Select(n => Path.Combine(torchLibDirectory, n)).ToList();
        var missing = paths.Where(p => !File.Exists(p)).ToList();
        if (missing.Count > 0)
            throw new TorchSharpUnavailableException($"The shared setup needs Python torch's libtorch, but {string.Join(", ", missing)} does not exist. " +
                "Fix: pass the torch package's lib folder (python -c \"import torch, os; print(os.path.dirname(torch.__file__) + '/lib')\").");
        return paths;
    }

    /// <summary>The libstdc++ the process would load, and whether it provides <see cref="RequiredGlibcxx"/> (Linux only).</summary>
    public static (string? Path, bool HasRequiredVersion) InspectLibStdCxx() => s_libstdcxx.Value;

    // Reads the whole library (~2 MB) once per process; InspectLibStdCxx and Problem share the answer.
    private static (string? Path, bool Ok) ReadLibStdCxx()
    {
        if (!OperatingSystem.IsLinux())
            return (null, true);
        string[] candidates =
        [
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
        ];
        var path = candidates.FirstOrDefault(File.Exists);
        if (path is null)
            return (null, false);
        var needle = Encoding.ASCII.GetBytes(RequiredGlibcxx + "\0");
        return (path, File.ReadAllBytes(path).AsSpan().IndexOf(needle) >= 0);
    }

    private static void CheckNoOtherLibTorch()
    {
        var allowed = s_sharedDirectory is { } shared && Directory.Exists(shared)
            ? Directory.EnumerateFiles(shared).Select(LibTorchGuard.RealPath).ToHashSet(StringComparer.Ordinal)
            : [];
        // TorchSharp's own libtorch, when the application used TorchSharp before asking this library (e.g. built a
        // TorchVision model first): it lies beside the libLibTorchSharp that is already mapped.
        var own = OwnNativeDirectory();
        var foreign = LibTorchGuard.MappedLibTorchFiles()
            .Where(p => !allowed.Contains(p) && (own is null || !string.Equals(Path.GetDirectoryName(p), own, StringComparison.Ordinal)))
            .ToList();
        var pythonTorch = false;
        if (PythonRuntime.IsRunning)
        {
            using var gil = PythonRuntime.AcquireGil();
            pythonTorch = LibTorchGuard.IsPythonTorchImported();
        }
        if (foreign.Count == 0 && (!pythonTorch || s_sharedDirectory is not null))
            return;
        var pythonVersion = PythonRuntime.IsRunning ? PythonRuntime.Installation.TorchVersion : null;
        var loaded = pythonTorch ? $"Python torch {pythonVersion ?? "(version unknown)"} is imported" : "another libtorch is loaded";
        var where = foreign.Count > 0 ? $" (libtorch mapped from {foreign[0]})" : "";
        throw new LibTorchConflictException(
            $"Cannot load TorchSharp {TorchSharpVersion} (libtorch {LibTorchVersion}): {loaded} in this process{where}",
            pythonVersion ?? (foreign.Count > 0 ? LibTorchGuard.VersionFromFileName(foreign[0]) : null), LibTorchVersion);
    }

    /// <summary>The directory of the libLibTorchSharp mapped into this process, or null when TorchSharp's native code is not loaded yet.</summary>
    private static string? OwnNativeDirectory()
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps))
            return null;
        foreach (var line in File.ReadLines(maps))
        {
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 6 && fields[5].Trim() is var path && path.StartsWith('/') && Path.GetFileName(path).StartsWith("libLibTorchSharp.", StringComparison.Ordinal))
                return Path.GetDirectoryName(path);
        }
        return null;
    }

    private static (string Version, string Source) FindLibTorchVersion()
    {
        var depsFiles = (AppContext.GetData("APP_CONTEXT_DEPS_FILES") as string)?.Split(';', StringSplitOptions.RemoveEmptyEntries) ?? [];
        foreach (var file in depsFiles.Where(File.Exists))
        {
            if (LibTorchVersionFromDeps(File.ReadAllText(file)) is { } found)
                return found;
        }
        return (BuiltAgainstLibTorch, $"TorchSharp {TorchSharpVersion} release (no libtorch package in deps.json)");
    }

    /// <summary>The libtorch package version in a deps.json (<c>libtorch-cpu-linux-x64/2.10.0</c> gives 2.10.0), with its package name.</summary>
    public static (string Version, string Source)? LibTorchVersionFromDeps(string depsJson)
    {
        ArgumentNullException.ThrowIfNull(depsJson);
        using var document = JsonDocument.Parse(depsJson);
        if (!document.RootElement.TryGetProperty("libraries", out var libraries))
            return null;
        foreach (var library in libraries.EnumerateObject())
        {
            var slash = library.Name.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0)
                continue;
            var name = library.Name[..slash];
            // libtorch-cpu-linux-x64, libtorch-cuda-12.8-linux-x64, ...: the packages that carry the native libtorch.
            if (name.StartsWith("libtorch-", StringComparison.OrdinalIgnoreCase) && name.Count(c => c == '-') >= 3)
                return (library.Name[(slash + 1)..], "deps.json: " + name);
        }
        return null;
    }
}
