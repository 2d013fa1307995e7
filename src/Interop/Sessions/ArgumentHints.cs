// Design notes: errors of calls, seen by the caller. A traceback starts at the user's code (the helper package's
// leading frames are left out). A Python error about dtypes says nothing about .NET, yet the dtype of a tensor argument was chosen
// by the .NET element type (C# double -> float64, long -> int64). Both session kinds pass a Python error through
// Annotate with the call's .NET arguments; when the message is about dtypes and an argument was an array, the
// error gets a hint naming the argument, its .NET type, the dtype it became and the conversion to use.
using System.Collections;
using System.Text.RegularExpressions;
using Interop.DTypes;
using Interop.Errors;

namespace Interop.Sessions;

internal static partial class ArgumentHints
{
    // PyTorch: "mat1 and mat2 must have the same dtype", "expected scalar type Float but found Double",
    // "Input type (double) and bias type (float) should be the same"; NumPy: "Cannot cast ufunc ... from dtype('float64')".
    [GeneratedRegex(@"dtype|scalar type|Input type \(|\b(Double|Float|Half|Long)\b|float64|int64", RegexOptions.CultureInvariant)]
    private static partial Regex DTypeMessage();

    /// <summary>
    /// <paramref name="error"/> as the caller should see it: the library's own call frames left out of the traceback
    /// (<see cref="TrimHelperFrames"/>), and a hint when it is about dtypes and an argument's dtype came from a .NET type.
    /// </summary>
    public static PythonErrorException Annotate(PythonErrorException error, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?>? kwargs)
    {
        var traceback = TrimHelperFrames(error.PythonTraceback);
        var hint = error.Hint ?? DTypeHint(error, args, kwargs);
        return hint == error.Hint && traceback == error.PythonTraceback ? error
            : new PythonErrorException(error.PythonType, error.PythonMessage, traceback, error, hint);
    }

    [GeneratedRegex(@"^  File ""(?<file>[^""]*)"", line \d+", RegexOptions.CultureInvariant)]
    private static partial Regex FrameLine();

    /// <summary>
    /// A formatted traceback without the leading frames of the library's helper package (interop_helpers: calls.call, the
    /// worker's request loop, exec_source), so a script's error starts at the user's code. Only frames before the first frame
    /// outside the package go, in each section of a chained traceback; a section made only of the package's frames (an
    /// export-policy refusal) stays whole. A line says how many frames were left out.
    /// </summary>
    internal static string TrimHelperFrames(string traceback)
    {
        if (string.IsNullOrEmpty(traceback) || !traceback.Contains(Embedding.PythonRuntime.HelperPackage, StringComparison.Ordinal))
            return traceback;
        var lines = traceback.Split('\n');
        var output = new List<string>(lines.Length);
        var i = 0;
        while (i < lines.Length)
        {
            // One section: its frames run from the "Traceback" line to the first line that is neither a frame nor its code.
            if (!lines[i].StartsWith("Traceback (most recent call last):", StringComparison.Ordinal))
            {
                output.Add(lines[i++]);
                continue;
            }
            output.Add(lines[i++]);
            var frames = new List<(bool Helper, List<string> Lines)>();
            while (i < lines.Length && FrameLine().Match(lines[i]) is { Success: true } m)
            {
                var frame = new List<string> { lines[i++] };
                while (i < lines.Length && lines[i].StartsWith("    ", StringComparison.Ordinal))
                    frame.Add(lines[i++]);
                var file = m.Groups["file"].Value.Replace('\\', '/');
                frames.Add((file.Contains("/" + Embedding.PythonRuntime.HelperPackage + "/", StringComparison.Ordinal), frame));
            }
            var leading = frames.TakeWhile(f => f.Helper).Count();
            if (leading == frames.Count)
                leading = 0;
            if (leading > 0)
                output.Add($"  ({leading} frame{(leading == 1 ? "" : "s")} of {Embedding.PythonRuntime.HelperPackage} left out)");
            foreach (var (_, frame) in frames.Skip(leading))
                output.AddRange(frame);
        }
        return string.Join('\n', output);
    }

    private static string? DTypeHint(PythonErrorException error, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?>? kwargs)
    {
        if (!DTypeMessage().IsMatch(error.PythonMessage))
            return null;
        var found = new List<(string Where, Type Type, DType DType)>();
        for (var i = 0; i < args.Count; i++)
            Collect(args[i], $"argument {i}", found, 0);
        if (kwargs is not null)
            foreach (var (name, value) in kwargs)
                Collect(value, $"keyword argument '{name}'", found, 0);
        if (found.Count == 0)
            return null;
        var parts = found.Take(4).Select(f => $"{f.Where} is a .NET {Describe(f.Type)} and became a {f.DType.Name} array/tensor").ToList();
        var hint = string.Join("; ", parts) + ".";
        if (found.Any(f => f.DType == DType.Float64))
            hint += " C# double is float64, while PyTorch models and most float code use float32: pass float[] / float[,] instead " +
                    "(e.g. Array.ConvertAll(values, v => (float)v)), or convert in Python (x.float() / x.astype(np.float32)).";
        else if (found.Any(f => f.DType == DType.Int64))
            hint += " C# long is int64; pass int[] (int32) or float[] (float32) if the callee expects those, or convert in Python.";
        else
            hint += " Pass an array of the element type the callee expects (float[] = float32, double[] = float64, int[] = int32, long[] = int64).";
        return hint;
    }

    private static string Describe(Type type) => type.IsArray ? type.GetElementType()!.Name + "[" + new string(',', type.GetArrayRank() - 1) + "]" : type.Name;

    private static void Collect(object? value, string where, List<(string, Type, DType)> found, int depth)
    {
        if (value is null || depth > 8 || value is string)
            return;
        if (value is Array a && a.GetType().GetElementType() is { } e && DType.All.Any(d => d.ClrType == e))
        {
            found.Add((where, value.GetType(), DType.Of(e)));
            return;
        }
        if (value is TensorArgument t)
        {
            found.Add((where, typeof(TensorArgument), t.DType));
            return;
        }
        if (value is IDictionary dict)
        {
            foreach (DictionaryEntry entry in dict)
                Collect(entry.Value, value is PythonSession.ScriptGlobals ? $"global '{entry.Key}'" : $"{where}['{entry.Key}']", found, depth + 1);
            return;
        }
        if (value is IList list and not Array)
            for (var i = 0; i < list.Count; i++)
                Collect(list[i], $"{where}[{i}]", found, depth + 1);
        else if (value is object?[] items)
            for (var i = 0; i < items.Length; i++)
                Collect(items[i], $"{where}[{i}]", found, depth + 1);
    }
}
