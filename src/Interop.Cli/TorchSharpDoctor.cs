// Design notes: the TorchSharp half of `doctor`. It never imports Python torch (discovery reads torch's version in a
// child process), so the one libtorch it may load is TorchSharp's own, to check that TorchSharp really runs here.
using System.Text.Json.Serialization;
using Interop.Embedding;
using Interop.TorchSharp;

namespace Interop.Cli;

/// <summary>What doctor reports about TorchSharp, libtorch, libstdc++ and sharing a process with PyTorch.</summary>
/// <param name="TorchSharpVersion">TorchSharp's version (assembly metadata).</param>
/// <param name="LibTorchVersion">The libtorch release TorchSharp loads.</param>
/// <param name="LibTorchSource">Where that version was read.</param>
/// <param name="LibStdCxx">The libstdc++ the process loads.</param>
/// <param name="HasGlibcxx">Whether it has <see cref="TorchSharpSupport.RequiredGlibcxx"/>.</param>
/// <param name="Problem">Why TorchSharp cannot run here, or null when it ran a tensor operation.</param>
/// <param name="CanShare">Whether Python torch and TorchSharp can live in one process (the shared setup).</param>
/// <param name="ShareReason">Why (not).</param>
public sealed record TorchSharpReport(
    [property: JsonPropertyName("version")] string TorchSharpVersion,
    [property: JsonPropertyName("libtorch")] string LibTorchVersion,
    [property: JsonPropertyName("libtorchSource")] string LibTorchSource,
    [property: JsonPropertyName("libstdcxx")] string? LibStdCxx,
    [property: JsonPropertyName("glibcxx")] bool HasGlibcxx,
    [property: JsonPropertyName("problem")] string? Problem,
    [property: JsonPropertyName("canShareWithPyTorch")] bool CanShare,
    [property: JsonPropertyName("share")] string ShareReason)
{
    /// <summary>Collects the report; loads TorchSharp (never Python torch) when libstdc++ allows it.</summary>
    public static TorchSharpReport Collect(PythonInstallation? python)
    {
        var (libstdcxx, glibcxx) = TorchSharpSupport.InspectLibStdCxx();
        var problem = TorchSharpSupport.Problem;
        var sharing = TorchSharpSupport.SharingProblem(python?.TorchVersion, TorchSharpSupport.LibTorchVersion);
        var reason = sharing is null
            ? $"yes: Python torch {python?.TorchVersion} is libtorch {TorchSharpSupport.LibTorchVersion}; use TorchSharpSupport.UseSharedLibTorch()"
            : $"no: {sharing}. Keep PyTorch in a separate process (worker mode), or install torch=={TorchSharpSupport.LibTorchVersion} for the shared setup";
        return new TorchSharpReport(TorchSharpSupport.TorchSharpVersion, TorchSharpSupport.LibTorchVersion, TorchSharpSupport.LibTorchVersionSource,
            libstdcxx, glibcxx, problem, sharing is null && problem is null, reason);
    }

    /// <summary>The table rows, indented like the rest of doctor's table.</summary>
    public void Write(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        output.WriteLine($"  {"torchsharp",-10} {TorchSharpVersion} ({(Problem is null ? "loads and runs here" : "cannot run here")})");
        output.WriteLine($"  {"libtorch",-10} {LibTorchVersion} ({LibTorchSource})");
        output.WriteLine($"  {"libstdc++",-10} {LibStdCxx ?? "not found"} ({TorchSharpSupport.RequiredGlibcxx}: {(HasGlibcxx ? "yes" : "no")})");
        output.WriteLine($"  {"share",-10} PyTorch + TorchSharp in one process: {ShareReason}");
        if (Problem is not null)
            output.WriteLine($"  note: TorchSharp: {Problem}");
    }
}
