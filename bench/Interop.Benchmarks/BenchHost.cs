namespace Interop.Benchmarks;

/// <summary>What the benchmarks and Stopwatch harnesses read from the machine and the repository.</summary>
internal static class BenchHost
{
    /// <summary>User + system CPU time of a process (from /proc/PID/stat, in clock ticks of 10 ms).</summary>
    public static TimeSpan ProcessCpu(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture);
        return TimeSpan.FromMilliseconds(ticks * 10);
    }

    /// <summary>Sorts <paramref name="values"/> in place (so [0] and [^1] are then the extremes) and returns the middle one.</summary>
    public static double Median(Span<double> values)
    {
        values.Sort();
        return values[values.Length / 2];
    }

    /// <summary>The value after option <paramref name="name"/> on a harness's command line ("--spin 400"), or null.</summary>
    public static string? Option(string[] args, string name)
    {
        var at = Array.IndexOf(args, name);
        return at > 0 && at + 1 < args.Length ? args[at + 1] : null;
    }

    /// <summary>
    /// A harness's positional arguments (after its name): neither options nor the values of the options named in
    /// <paramref name="valued"/>.
    /// </summary>
    public static string[] Positional(string[] args, params string[] valued) =>
        args.Skip(1).Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && !valued.Contains(args[i])).ToArray();

    /// <summary>"--spin N": the host's spin for a reply, in microseconds (ControlBlock.SpinMicroseconds), when given.</summary>
    public static void ApplySpin(string[] args)
    {
        if (Option(args, "--spin") is { } spin)
            Interop.Isolated.ControlBlock.SpinMicroseconds = long.Parse(spin, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The 1-minute load average, as /proc/loadavg prints it.</summary>
    public static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

    /// <summary>A Python file of bench/Interop.Benchmarks (e.g. isolated_bench.py), found above the build output.</summary>
    public static string Script(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "bench", "Interop.Benchmarks", name);
            if (File.Exists(candidate))
                return candidate;
        }
        throw new FileNotFoundException($"bench/Interop.Benchmarks/{name} not found above " + AppContext.BaseDirectory);
    }
}
