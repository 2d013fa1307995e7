using System.Diagnostics;
using Interop.Embedding;

namespace Interop.Tests;

/// <summary>Shared facts about the interpreter under test (the one INTEROP_PYTHON or PATH gives).</summary>
internal static class TestPython
{
    private static readonly Lazy<PythonInstallation> s_found = new(() => PythonDiscovery.Find());

    public static PythonInstallation Installation => s_found.Value;

    public static string Executable => Installation.Executable!;

    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Interop.sln")))
                    return dir.FullName;
            throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Runs a child process and returns (exit code, stdout + stderr); kills it after <paramref name="timeout"/>.</summary>
    public static (int ExitCode, string Output, bool TimedOut) Run(string file, IEnumerable<string> args, TimeSpan timeout, IDictionary<string, string>? env = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            start.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
            start.Environment[k] = v;
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, stdout.Result + stderr.Result, true);
        }
        return (p.ExitCode, stdout.Result + stderr.Result, false);
    }

    public static string CliDll => Path.Combine(AppContext.BaseDirectory, "Interop.Cli.dll");
}
