using Interop.Embedding;
using Interop.NumPy;

namespace Interop.Benchmarks;

/// <summary>Shared helpers: sizes are in bytes of float32 data; arrays are built once per benchmark case.</summary>
internal static class Sizes
{
    public const int KiB = 1024;
    public const int MiB = 1024 * KiB;

    /// <summary>Number of float32 elements in <paramref name="bytes"/> bytes.</summary>
    public static int Floats(long bytes) => checked((int)(bytes / sizeof(float)));

    /// <summary>Starts Python (once per process) and makes a float32 NumPy array of <paramref name="bytes"/> bytes, every page touched.</summary>
    public static NDArray NumPyFloats(long bytes)
    {
        PythonRuntime.Initialize();
        return NDArray.Evaluate($"np.arange({bytes / sizeof(float)}, dtype='float32')");
    }

    /// <summary>A .NET float[] of <paramref name="bytes"/> bytes with every page touched.</summary>
    public static float[] NetFloats(long bytes)
    {
        var a = new float[Floats(bytes)];
        for (var i = 0; i < a.Length; i++)
            a[i] = i;
        return a;
    }

    /// <summary>Drops what a case allocated before the next case starts (all cases share one process).</summary>
    public static void Collect()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
