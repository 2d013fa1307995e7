// The seed chain end to end, across two processes: .NET data -> shared memory -> worker: np.frombuffer ->
// torch.from_numpy -> a computation -> export policy -> Tensor.numpy() -> shared memory -> a TorchSharp tensor over
// the mapping in this process; TorchSharp computes the same and both are compared.
// This code runs in a process that never imports Python torch (the demo's first steps did, in their process, so the
// demo starts this step as a child: `Interop.Cli seed-chain`).
using System.Diagnostics;
using Interop.Sessions;
using Interop.Torch;
using Interop.TorchSharp;
using TorchSharp;

namespace Interop.Cli;

/// <summary>What the seed chain observed; the tests assert these facts.</summary>
public sealed record SeedChainFacts(
    int WorkerProcessId, string WorkerTorchVersion, long[] Shape, float[] WorkerValues,
    string? TorchSharpProblem, float[]? HostValues, double MaxDifference, bool TorchSharpViewsSharedMemory, IReadOnlyList<string> LibTorchInThisProcess);

/// <summary>The demo's last step (isolated mode, TorchSharp in the host).</summary>
public static class SeedChain
{
    private static readonly float[,] s_data = { { 1, 2, 3 }, { 2, 1, 3 }, { 2, 3, 5 }, { 5, 6, 4 } };

    /// <summary>Where the example module lives: python/interop_examples/seed_chain.py above the assembly.</summary>
    public static string ExampleFile
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "python", "interop_examples", "seed_chain.py");
                if (File.Exists(candidate))
                    return candidate;
            }
            throw new FileNotFoundException("python/interop_examples/seed_chain.py was not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Runs the step in a fresh child process of this CLI and copies its output, indented; returns its exit code.</summary>
    public static int RunInChild(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        output.WriteLine();
        output.WriteLine("Step 5. The same chain across two processes: isolated mode (a fresh child process runs this step, because");
        output.WriteLine("        this one imported Python torch, and TorchSharp's libtorch cannot join it)");
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, typeof(SeedChain).Assembly.GetName().Name + ".dll")); // not Assembly.Location: empty in single-file apps
        start.ArgumentList.Add("seed-chain");
        using var child = Process.Start(start)!;
        var errors = child.StandardError.ReadToEndAsync();
        while (child.StandardOutput.ReadLine() is { } line)
            output.WriteLine("  " + line);
        child.WaitForExit();
        if (errors.Result.Length > 0)
            output.WriteLine("  " + errors.Result.TrimEnd().ReplaceLineEndings(Environment.NewLine + "  "));
        return child.ExitCode;
    }

    /// <summary>Runs the step in this process (which must not have imported Python torch), writing to <paramref name="output"/>.</summary>
    public static SeedChainFacts Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var session = PythonSession.Isolated();
        using var module = session.LoadFile(ExampleFile);
        using var compute = module.GetAttr("compute");
        using var versions = module.GetAttr("versions");
        using var torchVersion = versions.Call();
        using var pid = session.Import("os").GetAttr("getpid").Call();
        output.WriteLine($"x = {Format(s_data)} (a .NET float[4, 3])");
        output.WriteLine($"worker: pid {pid.AsInt64()} (this process: {Environment.ProcessId}), {session.Description}");
        output.WriteLine("  .NET -> shared memory (one copy) -> np.frombuffer -> torch.from_numpy -> softmax(x @ x.T / 10, dim=1)");
        output.WriteLine("  -> export policy -> Tensor.numpy() -> result region (one copy) -> read in place here");
        using var result = compute.Call(s_data);
        var workerValues = result.AsReadOnlySpan<float>().ToArray(); // printed from the span over the mapping
        var shape = result.Shape;
        output.WriteLine($"worker result: shape ({string.Join(", ", shape)}), {result.DType}");
        PrintRows(output, "  ", workerValues, shape);

        var problem = TorchSharpSupport.Problem;
        if (problem is not null)
        {
            output.WriteLine($"TorchSharp: skipped here ({problem})");
            output.WriteLine("  The worker's result above was read in place from the shared region (AsReadOnlySpan: no copy on this side).");
            return new SeedChainFacts((int)pid.AsInt64(), torchVersion.AsString(), shape, workerValues, problem, null, double.NaN, false, LibTorchGuard.MappedLibTorchFiles());
        }
        using var shared = result.ToTorchSharp(TorchSharpMemory.Share);
        var viewsShared = shared.DataAddress() == result.AsTensorData().Address;
        using var x = torch.tensor(Flatten(s_data), [4, 3]);
        using var scores = x.matmul(x.t()) / 10.0f;
        using var expected = torch.softmax(scores, 1);
        using var difference = (shared - expected).abs().max();
        var maxDifference = difference.item<float>();
        var hostValues = expected.data<float>().ToArray();
        output.WriteLine($"TorchSharp {TorchSharpSupport.TorchSharpVersion} (libtorch {TorchSharpSupport.LibTorchVersion}) in this process; Python torch {torchVersion.AsString()} in the worker");
        output.WriteLine($"  the worker's result as a TorchSharp tensor: data_ptr 0x{shared.DataAddress():x}, the shared mapping 0x{result.AsTensorData().Address:x}: {(viewsShared ? "the same memory, no copy" : "COPIED")}");
        output.WriteLine("  the same formula computed here with TorchSharp:");
        PrintRows(output, "  ", hostValues, shape);
        var agree = torch.allclose(shared, expected, rtol: 1e-5, atol: 1e-6);
        output.WriteLine($"  max |worker - TorchSharp| = {maxDifference:G3}: {(agree ? "they agree" : "THEY DIFFER")}");
        var mapped = LibTorchGuard.MappedLibTorchFiles();
        output.WriteLine($"  libtorch files mapped in this process: {string.Join(", ", mapped.Select(Path.GetFileName).Distinct())} (TorchSharp's only; Python torch never loaded here)");
        return new SeedChainFacts((int)pid.AsInt64(), torchVersion.AsString(), shape, workerValues, null, hostValues, maxDifference, viewsShared, mapped);
    }

    private static float[] Flatten(float[,] data) => data.Cast<float>().ToArray();

    private static string Format(float[,] data) =>
        "[" + string.Join(", ", Enumerable.Range(0, data.GetLength(0)).Select(r => "[" + string.Join(", ", Enumerable.Range(0, data.GetLength(1)).Select(c => data[r, c])) + "]")) + "]";

    private static void PrintRows(TextWriter output, string indent, float[] values, long[] shape)
    {
        var columns = (int)shape[^1];
        for (var row = 0; row < values.Length / columns; row++)
            output.WriteLine(indent + "[" + string.Join(", ", values.Skip(row * columns).Take(columns).Select(v => v.ToString("0.000000", System.Globalization.CultureInfo.InvariantCulture))) + "]");
    }
}
