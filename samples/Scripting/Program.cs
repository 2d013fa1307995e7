// The scripting sample: a .NET program runs a user's analysis script (analysis.py) over a .NET dataset
// (a dictionary of arrays in, a dictionary of results out), shows a Python error with its traceback, and runs
// the same code in both session kinds, checking that they agree. Exit code 0 when they do.
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;

namespace Interop.Samples.Scripting;

/// <summary>The sample's entry point.</summary>
public static class Program
{
    /// <summary>Runs the analysis in-process and isolated; returns 0 when both kinds give the same results.</summary>
    public static int Main()
    {
        var script = Path.Combine(AppContext.BaseDirectory, "analysis.py");
        var dataset = new Dictionary<string, object?>
        {
            ["height"] = new[] { 1.62, 1.75, 1.80, 1.68, 1.91, 1.57 },
            ["weight"] = new[] { 58.0, 72.5, 80.1, 66.0, 95.3, 50.2 },
        };
        var globals = new Dictionary<string, object?> { ["columns"] = dataset, ["threshold"] = 25.0 };
        // A NumPy script: .NET arrays arrive as numpy.ndarray whether or not PyTorch is installed.
        var options = new CallOptions { Arrays = ArrayConversion.NumPy, Timeout = TimeSpan.FromMinutes(1) };

        var answers = new List<string>();
        foreach (var mode in new[] { SessionMode.InProcess, SessionMode.Isolated })
        {
            using var session = PythonSession.Create(mode);
            session.Output = Console.Out; // the script's print() output, in both kinds
            Console.WriteLine($"== {mode}: {session.Description}");

            using var results = session.ExecFile(script, globals, options);
            var text = Describe(results);
            Console.WriteLine(text);
            answers.Add(text);

            // A bug in a user's script: a Python error with its type, message and traceback.
            try
            {
                using var _ = session.Exec("ages = columns['age']\nmean_age = ages.mean()", globals, options);
            }
            catch (PythonErrorException e)
            {
                Console.WriteLine($"Python error {e.PythonType}: {e.PythonMessage}");
                Console.WriteLine(e.PythonTraceback.TrimEnd());
            }
        }

        var same = answers[0] == answers[1];
        Console.WriteLine(same ? "Both session kinds gave the same results." : "The session kinds disagree!");
        return same ? 0 : 1;
    }

    private static string Describe(PythonValue results)
    {
        var lines = new List<string>();
        foreach (var (name, stats) in results["stats"].Entries)
            lines.Add($"{name.AsString(),-7} mean {stats["mean"].AsDouble(),8:F3}  std {stats["std"].AsDouble(),7:F3}  " +
                      $"min {stats["min"].AsDouble(),7:F2}  max {stats["max"].AsDouble(),7:F2}");
        lines.Add($"correlation(height, weight) = {results["correlation"].AsDouble():F4}");
        double[] bmi = results["bmi"].ToArray<double>();
        lines.Add($"BMI: {string.Join(", ", bmi.Select(b => b.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)))}");
        lines.Add($"rows with BMI above 25: {results["above"].AsInt64()}");
        return string.Join(Environment.NewLine, lines);
    }
}
