// Design notes: one-copy reads and writes of a worker's memory (process_vm_readv(2) / process_vm_writev(2)), for
// model-weight transfers (reads: Python -> TorchSharp; writes: TorchSharp -> Python).
// - The worker is this process's child, so Yama's ptrace_scope 0 or 1 lets this process read it; ptrace_scope 2/3, a
//   seccomp filter, or another OS refuses (EPERM / ENOSYS): the caller then takes the shared-region route instead. The
//   first 64 KiB (ProbeBytes) are copied alone, on the calling thread, so a refusal is seen before anything was copied.
// - The kernel checks the remote ranges; they are never dereferenced here. The caller vouches for the destinations (its
//   own tensors' memory, exactly `Length` bytes each, alive and unused by others until the call returns) and must hold
//   the worker (WorkerProcess.Hold) so that no other request runs in the worker while the memory it described is read.
// - Speed: the kernel pins and copies the remote pages a few at a time, which runs at about half a memcpy on one thread;
//   large batches are therefore cut into pieces of up to 4 MiB that up to MaxThreads threads (this one included) read in
//   parallel, while the worker waits. Small batches stay on this thread. A piece is one system call over a list of
//   ranges (up to IOV_MAX), so a model of many small tensors costs a few calls, not one per tensor. From memory that the
//   worker backs with huge pages the kernel copies at about a memcpy's speed (model_state._HugePages).
// - Failures: ESRCH (or the process gone) -> WorkerCrashedException; EFAULT, a read that stops short or makes no
//   progress -> WorkerMemoryException (typed, names the range); an impossible range -> WorkerProtocolException, before
//   anything is read; EINTR is retried. After a failure the other threads stop at their next piece.
using System.Buffers;
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

    /// <summary>A part of one segment (at most <see cref="PieceBytes"/>).</summary>
    private readonly record struct Chunk(int Segment, long Offset, long Length);

    /// <summary>Consecutive chunks copied by one system call (and its continuations): at most <see cref="PieceBytes"/> and <see cref="LibC.MaxRanges"/> chunks.</summary>
    private readonly record struct Piece(int First, int Count, long Length);

    /// <summary>The first call of a transfer copies at most this many bytes, alone: a refusal is seen early and cheaply.</summary>
    internal const long ProbeBytes = 64L << 10;

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
        var chunks = new List<Chunk>();
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
            for (long offset = 0; offset < length;)
            {
                // The very first chunk is the probe (see ProbeBytes); the others are pieces' worth at most.
                var part = Math.Min(chunks.Count == 0 ? ProbeBytes : PieceBytes, length - offset);
                chunks.Add(new Chunk(i, offset, part));
                offset += part;
            }
            total += length;
        }
        if (chunks.Count == 0)
            return true;
        // Pieces: the probe alone, then runs of consecutive chunks of up to PieceBytes (many small tensors: one system call).
        var pieces = new List<Piece> { new(0, 1, chunks[0].Length) };
        for (var c = 1; c < chunks.Count;)
        {
            var first = c;
            long bytes = 0;
            while (c < chunks.Count && c - first < LibC.MaxRanges && (c == first || bytes + chunks[c].Length <= PieceBytes))
                bytes += chunks[c++].Length;
            pieces.Add(new Piece(first, c - first, bytes));
        }
        if (!CopyPiece(worker, segments, chunks, pieces[0], write, mayRefuse: true))
            return false;
        var threads = total >= ParallelBytes ? Math.Min(Math.Min(Environment.ProcessorCount, MaxThreads), pieces.Count - 1) : 1;
        // Destinations that overlap (tied weights, views of one storage) are copied in order on this thread, so that the
        // later segment's bytes are the ones that stay (as copy_ entry after entry leaves them): threads would let an
        // earlier piece land after a later one.
        if (threads > 1 && DestinationsOverlap(segments, write))
            threads = 1;
        if (threads <= 1)
        {
            for (var i = 1; i < pieces.Count; i++)
                CopyPiece(worker, segments, chunks, pieces[i], write, mayRefuse: false);
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
                    CopyPiece(worker, segments, chunks, pieces[i], write, mayRefuse: false);
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

    /// <summary>
    /// Whether any two segments' destinations share a byte: this process's ranges when reading, the worker's when writing.
    /// </summary>
    internal static bool DestinationsOverlap(IReadOnlyList<Segment> segments, bool write)
    {
        var ranges = new List<(ulong Start, ulong End)>(segments.Count);
        foreach (var segment in segments)
        {
            if (segment.Length <= 0)
                continue;
            var start = write ? (ulong)segment.Address : (ulong)segment.Local;
            ranges.Add((start, start + (ulong)segment.Length));
        }
        ranges.Sort();
        var end = 0UL; // the furthest end so far
        foreach (var (start, stop) in ranges)
        {
            if (start < end)
                return true;
            end = Math.Max(end, stop);
        }
        return false;
    }

    /// <summary>
    /// Copies one piece: one system call over all its chunks, continued after a partial copy from where it stopped (the
    /// kernel stops at the first remote page it cannot access, and the continuation then fails there with the error that
    /// names the chunk, its segment and the offset).
    /// </summary>
    private static bool CopyPiece(WorkerProcess worker, IReadOnlyList<Segment> segments, List<Chunk> chunks, Piece piece, bool write, bool mayRefuse)
    {
        var ranges = ArrayPool<LibC.MemoryRange>.Shared.Rent(piece.Count);
        try
        {
            long done = 0; // bytes of the piece copied
            var chunk = piece.First; // the chunk where `done` lies
            long within = 0; // bytes of that chunk copied
            while (done < piece.Length)
            {
                var count = 0;
                for (var c = chunk; c < piece.First + piece.Count; c++)
                {
                    var (index, offset, length) = chunks[c];
                    var skip = c == chunk ? within : 0;
                    var segment = segments[index];
                    ranges[count++] = new LibC.MemoryRange(segment.Local + (nint)(offset + skip), segment.Address + offset + skip, length - skip);
                }
                var copied = LibC.TransferProcessMemory(worker.ProcessId, ranges.AsSpan(0, count), write, out var error);
                if (copied > 0)
                {
                    done += copied;
                    for (within += copied; chunk < piece.First + piece.Count && within >= chunks[chunk].Length; chunk++)
                        within -= chunks[chunk].Length;
                    continue;
                }
                if (copied < 0 && error == EINTR)
                    continue;
                var failed = segments[chunks[chunk].Segment];
                var at = chunks[chunk].Offset + within;
                if (copied < 0 && (error == EPERM || error == LibC.ENOSYS))
                {
                    if (mayRefuse && done == 0)
                        return false;
                    throw new WorkerMemoryException(failed.What, worker.ProcessId, failed.Address, failed.Length, at, error,
                                                    $"direct {(write ? "writes" : "reads")} were refused in the middle of a transfer ({LibC.ErrorText(error)})");
                }
                if ((copied < 0 && error == ESRCH) || !worker.IsAlive)
                    throw worker.DiedDuringDirectCopy();
                throw new WorkerMemoryException(failed.What, worker.ProcessId, failed.Address, failed.Length, at, copied < 0 ? error : 0,
                    copied < 0 ? $"{LibC.ErrorText(error)} ({(error == EFAULT ? "EFAULT" : "errno " + error)})" : $"the {(write ? "write" : "read")} stopped short (the range runs past the worker's mapped{(write ? ", writable" : "")} memory)");
            }
            return true;
        }
        finally
        {
            ArrayPool<LibC.MemoryRange>.Shared.Return(ranges);
        }
    }
}
