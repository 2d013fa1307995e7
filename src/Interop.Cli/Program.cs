using System.Text.Json;
using Interop.Cli;
using Interop.Embedding;
using Interop.Errors;

var command = args.Length > 0 ? args[0] : "demo";
try
{
    switch (command)
    {
        case "demo":
            SeedDemo.Run(Console.Out);
            return SeedChain.RunInChild(Console.Out); // step 5 runs in a fresh process: this one imported Python torch
        case "seed-chain":
            // Hidden: the demo's last step (isolated worker + TorchSharp); never imports Python torch in this process.
            SeedChain.Run(Console.Out);
            return ModelReuseDemo.Run(Console.Out) is { Problem: null, WithinTolerance: false } ? 1 : 0;
        case "exec" when args.Length == 2:
            // Runs Python source in the embedded interpreter (a scripting bridge, and the exit tests' child).
            PythonRuntime.Run(() => { Python.Runtime.PythonEngine.Exec(args[1]); return 0; });
            return 0;
        case "exit-with-gil-held" when args.Length == 3:
            // Hidden: the exit tests' child: Main returns while another thread keeps the GIL for ever.
            return ExitChild.Run(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture));
        case "isolated-child":
            // Hidden: a host with a live isolated worker that waits to be killed (the host-crash test's child).
            return IsolatedChild.Run(args[1..]);
        case "doctor":
            return Doctor.Run(Console.Out, json: args.Contains("--json"));
        case "-h" or "--help" or "help":
            Console.WriteLine("usage: interop [demo | doctor [--json] | exec PYTHON_SOURCE]  (the Interop.Tool .NET tool; Interop.Cli.dll in the repository)");
            return 0;
        default:
            Console.Error.WriteLine($"unknown command '{command}'; usage: interop [demo | doctor [--json] | exec PYTHON_SOURCE]  (the Interop.Tool .NET tool; Interop.Cli.dll in the repository)");
            return 2;
    }
}
catch (InteropException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    if (e is PythonErrorException py)
        Console.Error.WriteLine(py.PythonTraceback);
    return 1;
}

namespace Interop.Cli
{
    /// <summary>Prints what the runtime discovers (without loading Python into the process).</summary>
    public static class Doctor
    {
        /// <summary>Runs discovery and prints a table or JSON; returns 0 when all is usable, 1 when Python, NumPy or PyTorch is missing, 2 when only TorchSharp cannot run.</summary>
        public static int Run(TextWriter output, bool json)
        {
            ArgumentNullException.ThrowIfNull(output);
            var environment = Environment.GetEnvironmentVariable("INTEROP_ENVIRONMENT") ?? "this machine";
            PythonInstallation? found = null;
            string? problem = null;
            try
            {
                found = PythonDiscovery.Find();
            }
            catch (InteropException e)
            {
                problem = e.Message;
            }
            if (found is not null && (found.NumPyVersion is null || found.TorchVersion is null))
                problem = $"missing: {(found.NumPyVersion is null ? "numpy " : "")}{(found.TorchVersion is null ? "torch" : "")}".Trim();
            string helpers;
            try
            {
                helpers = $"{PythonRuntime.LocateHelperPackage()} (version {PythonRuntime.LibraryVersion})";
            }
            catch (HelperPackageException e)
            {
                helpers = "problem";
                problem ??= e.Message;
            }
            var torchSharp = TorchSharpReport.Collect(found);
            if (json)
            {
                output.WriteLine(JsonSerializer.Serialize(new
                {
                    environment,
                    python = found?.Executable,
                    version = found?.Version.ToString(),
                    libpython = found?.LibraryPath,
                    source = found?.Source,
                    reason = found?.Reason,
                    searchOrder = PythonDiscovery.AutomaticOrder,
                    candidates = found?.Candidates.Select(c => new { path = c.Path, source = c.Source, executable = c.Executable, verdict = c.Verdict }),
                    helpers,
                    numpy = found?.NumPyVersion,
                    torch = found?.TorchVersion,
                    problem,
                    torchSharp,
                }));
            }
            else
            {
                output.WriteLine($"Interop doctor ({environment})");
                output.WriteLine($"  {"python",-10} {found?.Executable ?? "-"} ({found?.Source ?? "not found"})");
                if (found?.Reason is { } reason)
                    output.WriteLine($"  {"chosen",-10} {reason}");
                if (found is { Candidates.Count: > 0 })
                {
                    output.WriteLine($"  {"searched",-10} in this order: {PythonDiscovery.AutomaticOrder}");
                    foreach (var c in found.Candidates)
                        output.WriteLine($"  {"",-10} - {c}");
                }
                output.WriteLine($"  {"version",-10} {found?.Version.ToString() ?? "-"}");
                output.WriteLine($"  {"libpython",-10} {found?.LibraryPath ?? "-"}");
                output.WriteLine($"  {"numpy",-10} {found?.NumPyVersion ?? "not installed"}");
                output.WriteLine($"  {"torch",-10} {found?.TorchVersion ?? "not installed"}");
                output.WriteLine($"  {"helpers",-10} {helpers}");
                torchSharp.Write(output);
                if (problem is not null)
                    output.WriteLine($"  problem: {problem}");
            }
            // 0: all usable; 1: the core cannot work (Python, NumPy or PyTorch missing); 2: the core works, TorchSharp cannot run here.
            return problem is not null ? 1 : torchSharp.Problem is not null ? 2 : 0;
        }
    }
}
