// Design notes: whether TorchSharp can run in this process, decided before touching it where possible.
// TorchSharp 0.107's libLibTorchSharp.so needs GLIBCXX_3.4.32 (GCC 13+ libstdc++); on older systems the
// first TorchSharp call fails with a misleading "doesn't contain a reference to libtorch" message, so the
// libstdc++ check runs first and names the real cause.
using System.Text;

namespace Interop.TorchSharp;

/// <summary>Checks that TorchSharp can load here, and says why not.</summary>
public static class TorchSharpSupport
{
    /// <summary>The libstdc++ symbol version TorchSharp 0.107's native library requires.</summary>
    public const string RequiredGlibcxx = "GLIBCXX_3.4.32";

    private static readonly Lazy<string?> s_problem = new(FindProblem);

    /// <summary>True when TorchSharp loaded and ran a tensor operation in this process.</summary>
    public static bool IsAvailable => s_problem.Value is null;

    /// <summary>Why TorchSharp cannot run here (null when it can).</summary>
    public static string? Problem => s_problem.Value;

    /// <summary>The libstdc++ the process would load, and whether it provides <see cref="RequiredGlibcxx"/> (Linux only).</summary>
    public static (string? Path, bool HasRequiredVersion) InspectLibStdCxx()
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

    private static string? FindProblem()
    {
        var (path, ok) = InspectLibStdCxx();
        if (!ok)
            return $"TorchSharp 0.107 needs {RequiredGlibcxx} (libstdc++ from GCC 13+), but {path ?? "this system's libstdc++"} lacks it " +
                   "(Debian 12 ships GCC 12). Use a newer system (Debian 13, Ubuntu 24.04+, Fedora 39+) or ./interop.sh's debian13 environment.";
        try
        {
            using var probe = global::TorchSharp.torch.ones(2);
            return probe.sum().item<float>() == 2 ? null : "TorchSharp loaded but computed a wrong result";
        }
        catch (Exception e) when (e is NotSupportedException or TypeInitializationException or DllNotFoundException or EntryPointNotFoundException)
        {
            return $"TorchSharp could not load its native library: {e.Message}";
        }
    }
}
