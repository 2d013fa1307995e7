// Design notes: one-copy reads and writes of a worker's memory (process_vm_readv(2) / process_vm_writev(2)), for
// model-weight transfers (reads: Python -> TorchSharp; writes: TorchSharp -> Python).
// - The worker is this process's child, so Yama's ptrace_scope 0 or 1 lets this process read it; ptrace_scope 2/3, a
//   seccomp filter, or another OS refuses (EPERM / ENOSYS): the caller then takes the shared-region route instead. The
//   first piece is copied alone, on the calling thread, so a refusal is seen before anything was copied.
// - The kernel checks the remote ranges; they are never dereferenced here. The caller vouches for the destinations (its
//   own tensors' memory, exactly `Length` bytes each, alive and unused by others until the call returns) and must hold
//   the worker (WorkerProcess.Hold) so that no other request runs in the worker while the memory it described is read.
// - Speed: the kernel pins and copies the remote pages a few at a time, which runs at about half a memcpy on one thread;
//   large batches are therefore cut into pieces that up to MaxThreads threads (this one included) read in parallel,
//   while the worker waits. Small batches stay on this thread.
// - Failures: ESRCH (or the process gone) -> WorkerCrashedException; EFAULT, a read that stops short or makes no
//   progress -> WorkerMemoryException (typed, names the range); an impossible range -> WorkerProtocolException, before
//   anything is read; EINTR is retried. After a failure the other threads stop at their next piece.
using System.Runtime.ExceptionServices;
using Interop.Errors;
using Interop.Native;

namespace Interop.Isolated;

/// <summary>Direct reads and writes of a worker process's memory.</summary>
internal static class WorkerMemory
{
    private const int EPERM = 1, ESRCH = 3, EINTR = 4, EFAULT = 14;

    /// <summary>The most bytes asked of one system call (the kernel caps one call below 2 GiB); also the unit of work of a thread.</summary>
    internal const long PieceBytes = 4L << 20;

    /// <summary>Batches of at least this many bytes are read by several threads.</summary>
    internal const long ParallelBytes = 8L << 20;

    /// <summary>The most threads that read one batch.</summary>
    internal const int MaxThreads = 4;

    /// <summary>One range of the worker's memory and the range of this process it is copied to (read) or from (written).</summary>
    /// <param name="Address">The start in the worker (as the worker described it).</param>
    /// <param name="Length">Bytes, computed by the caller (never taken from the worker).</param>
    /// <param name="Local">Memory of this process of <paramref name="Length"/> bytes (writable, for reads).</param>
    /// <param name="What">The name used in errors (e.g. the state-dict key).</param>
    internal readonly record struct Segment(long Address, long Length, nint Local, string What);

    private readonly record struct Piece(int Segment, long Offset, long Length);

    /// <summary>
    /// Copies every segment from <paramref name="worker"/>'s memory to its destination. Returns false, having copied
    /// nothing, when direct reads are not allowed here (EPERM, ENOSYS); the caller falls back to another route.
    /// </summary>
    /// <exception cref="WorkerProtocolException">A range is impossible (not positive, or past the end of the address space); nothing was read.</exception>
    /// <exception cref="WorkerCrashedException">The worker died.</exception>
    /// <exception cref="WorkerMemoryException">A range is not (wholly) mapped in the worker.</exception>
    public static bool TryRead(WorkerProcess worker, IReadOnlyList<Segment> segments) => TryCopy(worker, segments, write: false);

    /// <summary>
    /// Copies every segment from this process's memory to <paramref name="worker"/>'s. Returns false, having copied
    /// nothing, when direct writes are not allowed here (EPERM, ENOSYS); the caller falls back to another route.
    /// </summary>
    /// <exception cref="WorkerProtocolException">A range is impossible; nothing was written.</exception>
    /// <exception cref="WorkerCrashedException">The worker died.</exception>
    /// <exception cref="WorkerMemoryException">A range is not (wholly) mapped and writable in the worker.</exception>
    public static bool TryWrite(WorkerProcess worker, IReadOnlyList<Segment> segments) => TryCopy(worker, segments, write: true);

    private static bool TryCopy(WorkerProcess worker, IReadOnlyList<Segment> segments, bool write)
    {
        var pieces = new List<Piece>();
        long total = 0;
        for (var i = 0; i < segments.Count; i++)
        {
            var (address, length, _, what) = segments[i];
            if (length < 0)
                throw new ArgumentOutOfRangeException(nameof(segments), length, $"{what}: a negative length");
            if (length == 0)
                continue;
            if (address <= 0 || address > long.MaxValue - length)
                throw new WorkerProtocolException($"{what}: the worker described {length:N0} bytes at 0x{address:x}, which is no range of a process's memory");
            for (long offset = 0; offset < length; offset += PieceBytes)
                pieces.Add(new Piece(i, offset, Math.Min(PieceBytes, length - offset)));
            total += length;
        }
        if (pieces.Count == 0)
            return true;
        if (!CopyPiece(worker, segments, pieces[0], write, mayRefuse: true))
            return false;
        var threads = total >= ParallelBytes ? Math.Min(Math.Min(Environment.ProcessorCount, MaxThreads), pieces.Count - 1) : 1;
        if (threads <= 1)
        {
            for (var i = 1; i < pieces.Count; i++)
                CopyPiece(worker, segments, pieces[i], write, mayRefuse: false);
            return true;
        }
        var next = 0; // pieces[0] is done
        ExceptionDispatchInfo? failure = null;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
        {
            while (Volatile.Read(ref failure) is null)
            {
                var i = Interlocked.Increment(ref next);
                if (i >= pieces.Count)
                    return;
                try
                {
                    CopyPiece(worker, segments, pieces[i], write, mayRefuse: false);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, ExceptionDispatchInfo.Capture(e), null);
                }
            }
        });
        failure?.Throw();
        return true;
    }

    private static bool CopyPiece(WorkerProcess worker, IReadOnlyList<Segment> segments, Piece piece, bool write, bool mayRefuse)
    {
        var segment = segments[piece.Segment];
        long done = 0;
        while (done < piece.Length)
        {
            var at = piece.Offset + done;
            var read = LibC.TransferProcessMemory(worker.ProcessId, segment.Local + (nint)at, segment.Address + at, piece.Length - done, write, out var error);
            if (read > 0)
            {
                done += read;
                continue;
            }
            if (read < 0 && error == EINTR)
                continue;
            if (read < 0 && (error == EPERM || error == LibC.ENOSYS))
            {
                if (mayRefuse && done == 0)
                    return false;
                throw new WorkerMemoryException(segment.What, worker.ProcessId, segment.Address, segment.Length, at, error,
                                                $"direct {(write ? "writes" : "reads")} were refused in the middle of a transfer ({LibC.ErrorText(error)})");
            }
            if ((read < 0 && error == ESRCH) || !worker.IsAlive)
                throw worker.DiedDuringDirectCopy();
            throw new WorkerMemoryException(segment.What, worker.ProcessId, segment.Address, segment.Length, at, read < 0 ? error : 0,
                read < 0 ? $"{LibC.ErrorText(error)} ({(error == EFAULT ? "EFAULT" : "errno " + error)})" : $"the {(write ? "write" : "read")} stopped short (the range runs past the worker's mapped{(write ? ", writable" : "")} memory)");
        }
        return true;
    }
}
