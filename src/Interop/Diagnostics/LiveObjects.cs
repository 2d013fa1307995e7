namespace Interop.Diagnostics;

/// <summary>
/// Counters of live foreign resources, for leak accounting: tests assert they return to their starting values.
/// </summary>
public static class LiveObjects
{
    private static long s_buffers;
    private static long s_exports;

    /// <summary>Python buffers (<c>Py_buffer</c>) acquired and not yet released.</summary>
    public static long PythonBuffers => Interlocked.Read(ref s_buffers);

    /// <summary>.NET memory exported to Python (pins and owners) that Python has not yet released.</summary>
    public static long ExportedToPython => Interlocked.Read(ref s_exports);

    internal static void BufferAcquired() => Interlocked.Increment(ref s_buffers);
    internal static void BufferReleased() => Interlocked.Decrement(ref s_buffers);
    internal static void ExportCreated() => Interlocked.Increment(ref s_exports);
    internal static void ExportReleased() => Interlocked.Decrement(ref s_exports);
}
