// Design notes: one-copy reads of a worker's memory (process_vm_readv(2)), for model-weight transfers.
// - The worker is this process's child, so Yama's ptrace_scope 0 or 1 lets this process read it; ptrace_scope 2/3, a
//   seccomp filter, or another OS refuses (EPERM / ENOSYS): the caller then takes the shared-region route instead.
// - The kernel checks the remote range; it is never dereferenced here. The caller vouches for the destination (its own
//   tensor's memory of exactly `length` bytes) and must hold the worker (WorkerProcess.Hold) so that no other request
//   runs in the worker while it reads the memory the worker described.
// - Failures: ESRCH (or the process gone) -> WorkerCrashedException; EFAULT, a read that stops short or makes no
//   progress -> WorkerMemoryException (typed, names the range); EINTR is retried.
using Interop.Errors;
using Interop.Native;

namespace Interop.Isolated;

/// <summary>Direct reads of a worker process's memory.</summary>
internal static class WorkerMemory
{
    private const int EPERM = 1, ESRCH = 3, EINTR = 4, EFAULT = 14;

    /// <summary>The most bytes asked of one system call (the kernel caps one call below 2 GiB).</summary>
    internal const long MaxChunk = 1L << 30;

    /// <summary>
    /// Copies <paramref name="length"/> bytes at <paramref name="address"/> in <paramref name="worker"/> to
    /// <paramref name="destination"/>. Returns false, having copied nothing, when direct reads are not allowed here
    /// (EPERM, ENOSYS); the caller falls back to another route.
    /// </summary>
    /// <exception cref="WorkerProtocolException">The range is impossible (not positive, or past the end of the address space).</exception>
    /// <exception cref="WorkerCrashedException">The worker died.</exception>
    /// <exception cref="WorkerMemoryException">The range is not (wholly) mapped in the worker.</exception>
    public static bool TryRead(WorkerProcess worker, long address, long length, nint destination, string what)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length == 0)
            return true;
        if (address <= 0 || address > long.MaxValue - length)
            throw new WorkerProtocolException($"{what}: the worker described {length:N0} bytes at 0x{address:x}, which is no range of a process's memory");
        long done = 0;
        while (done < length)
        {
            var chunk = Math.Min(length - done, MaxChunk);
            var read = LibC.ReadProcessMemory(worker.ProcessId, destination + (nint)done, address + done, chunk, out var error);
            if (read > 0)
            {
                done += read;
                continue;
            }
            if (read < 0 && error == EINTR)
                continue;
            if (read < 0 && (error == EPERM || error == LibC.ENOSYS) && done == 0)
                return false;
            if ((read < 0 && error == ESRCH) || !worker.IsAlive)
                throw worker.DiedDuringRead();
            throw new WorkerMemoryException(what, worker.ProcessId, address, length, done, read < 0 ? error : 0,
                read < 0 ? $"{LibC.ErrorText(error)} ({(error == EFAULT ? "EFAULT" : "errno " + error)})" : "the read stopped short (the range runs past the worker's mapped memory)");
        }
        return true;
    }
}
