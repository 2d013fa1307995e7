namespace Interop.Errors;

/// <summary>
/// A direct read or write of a worker's memory (<c>process_vm_readv(2)</c> / <c>process_vm_writev(2)</c>, the one-copy
/// route of model-weight transfers) failed: the worker described a range that is not (wholly) mapped (and, for writes,
/// writable) in its address space. This is a fault of the code in the
/// worker (or hostile code there), never of this process; the transfer stopped, and its destination may hold part of the
/// data. A worker that died during the copy gives <see cref="WorkerCrashedException"/> instead.
/// </summary>
public sealed class WorkerMemoryException : WorkerException
{
    /// <summary>Creates the exception for the range [<paramref name="address"/>, +<paramref name="length"/>) of worker <paramref name="processId"/>.</summary>
    public WorkerMemoryException(string what, int processId, long address, long length, long failedAt, int errorNumber, string reason)
        : base($"The direct copy of {what} ({length:N0} bytes at 0x{address:x} in worker pid {processId}) failed at byte {failedAt:N0}: {reason}. " +
               "The worker described memory it does not have (a bug or hostile code in the worker's Python, e.g. a replaced interop_helpers " +
               "function); in this process nothing outside the transfer's own tensors was written. Fix: restart the session and load again; if it persists, report it " +
               "with the worker's Python and PyTorch versions.")
    {
        ProcessId = processId;
        Address = address;
        Length = length;
        FailedAt = failedAt;
        ErrorNumber = errorNumber;
    }

    /// <summary>The worker's process id.</summary>
    public int ProcessId { get; }

    /// <summary>The start of the range in the worker.</summary>
    public long Address { get; }

    /// <summary>The length of the range in bytes.</summary>
    public long Length { get; }

    /// <summary>The offset in the range where the copy failed (the range is read in pieces, possibly in parallel).</summary>
    public long FailedAt { get; }

    /// <summary>The C error number (EFAULT: the range starts outside the worker's memory), or 0 for a read that stopped short.</summary>
    public int ErrorNumber { get; }
}
