// Design notes: the shared control block of one worker (docs/isolated.md, "Control block").
// - A host request region (a /dev/shm file unlinked at once, pages reserved) that the worker maps through
//   /proc/HOSTPID/fd/N, given on its command line. It carries the request and reply frames (up to AreaSize bytes
//   each; larger frames still go over the pipes) and two sequence numbers that are also the futex words: the host
//   writes a request, then bumps RequestSeq; the worker writes the reply, then sets ReplySeq to the request's number.
// - Waiting: a bounded spin (only while the other side may be running on another core), then FUTEX_WAIT in slices of
//   SliceMicroseconds. Before copying a payload of WorkerProcess.WakeAheadBytes or more the host wakes a sleeping worker
//   (WakeWorkerAhead), which then spins for the request: its wake-up overlaps the copy instead of following the post.
//   The worker does the same before copying a large result into its result region, and the host spins after such a
//   wake (once per wait: a worker that rings without replying cannot keep it spinning). A waiter announces itself in
//   its *Waiting word so the other side makes the FUTEX_WAKE system call only when someone sleeps. Each slice
//   re-checks the stop condition (the worker exited, the call was abandoned), so a worker that dies while the host
//   waits is noticed within a slice even though nobody wakes the futex, and a lost wake (a theoretical store-buffer
//   race of the Python side, which has no fence) costs one slice at most.
// - Everything the worker writes here is checked before use: the reply sequence may only stay or become the
//   request's number, the reply length must fit the area (or be the pipe marker).
using Interop.Errors;
using Interop.Native;

namespace Interop.Isolated;

/// <summary>The shared control block of one worker: frames and futex doorbells in shared memory.</summary>
internal sealed unsafe class ControlBlock : IDisposable
{
    /// <summary>"IPC1": the worker checks it before use.</summary>
    public const uint Magic = 0x31435049;

    /// <summary>Bytes of each frame area (request, reply).</summary>
    public const int AreaSize = 64 << 10;

    /// <summary>A frame length that says "the frame went over the pipe".</summary>
    public const uint OnPipe = 0xFFFF_FFFF;

    private const int HeaderSize = 4096;
    private const int MagicOffset = 0;
    private const int RequestSeqOffset = 64, WorkerWaitingOffset = 68, RequestLengthOffset = 72;
    private const int ReplySeqOffset = 128, HostWaitingOffset = 132, ReplyLengthOffset = 136;
    private const int RequestArea = HeaderSize, ReplyArea = HeaderSize + AreaSize;

    /// <summary>How long one futex wait lasts before the waiter re-checks the process and its call.</summary>
    public const long SliceMicroseconds = 10_000;

    /// <summary>The size of the block's region.</summary>
    public const long Size = HeaderSize + 2L * AreaSize;

    private static int s_spinners;
    private readonly SharedRegion _region;
    private readonly byte* _base;
    private uint _sequence;
    private uint _replied;
    private int _missedSpins, _waitsSinceProbe; // the number of the last request whose reply arrived (0: none yet)

    private ControlBlock(SharedRegion region)
    {
        _region = region;
        _base = (byte*)region.Address;
        *(uint*)(_base + MagicOffset) = Magic;
    }

    /// <summary>Creates a block (a host region); the worker opens it through /proc/PID/fd/<see cref="FileDescriptor"/>.</summary>
    public static ControlBlock Create() => new(SharedRegion.CreateForRequests(0, Size, control: true));

    /// <summary>The descriptor the worker opens.</summary>
    public int FileDescriptor => _region.FileDescriptor;

    /// <summary>How long the host spins for a reply before it sleeps on the futex (microseconds); 0 turns spinning off.</summary>
    public static long SpinMicroseconds { get; set; } = Environment.ProcessorCount > 1 ? 100 : 0;

    private uint* Word(int offset) => (uint*)(_base + offset);

    /// <summary>
    /// Publishes a request: its frame body here when it fits (<paramref name="body"/>), else the pipe marker (the caller
    /// has already written the frame to the pipe). Returns the request's sequence number.
    /// </summary>
    public uint Post(ReadOnlySpan<byte> body, bool onPipe)
    {
        if (!onPipe)
        {
            if (body.Length > AreaSize)
                throw new ArgumentOutOfRangeException(nameof(body), "the frame does not fit the control block; send it over the pipe");
            body.CopyTo(new Span<byte>(_base + RequestArea, AreaSize));
        }
        Volatile.Write(ref *Word(RequestLengthOffset), onPipe ? OnPipe : (uint)body.Length);
        var sequence = unchecked(++_sequence);
        if (sequence == 0)
            sequence = _sequence = 1; // 0 is the initial value of both words: never a request's number
        Interlocked.Exchange(ref *Word(RequestSeqOffset), sequence); // a full fence before reading the waiting flag
        if (Volatile.Read(ref *Word(WorkerWaitingOffset)) != 0)
            Futex.Wake((nint)Word(RequestSeqOffset));
        return sequence;
    }

    /// <summary>
    /// Waits until the worker answers request <paramref name="sequence"/>. Returns false when <paramref name="stop"/>
    /// says to give up (checked between futex slices: the worker exited, the call was abandoned).
    /// </summary>
    /// <exception cref="WorkerProtocolException">The worker wrote a sequence number that is neither the previous one nor this request's.</exception>
    public bool WaitForReply(uint sequence, Func<bool> stop)
    {
        var previous = _replied; // this side's record: what the worker wrote is not trusted as the baseline
        if (Volatile.Read(ref *Word(ReplySeqOffset)) == sequence)
            return Replied(sequence);
        var spin = SpinMicroseconds;
        // Adaptive: after a few spins in a row that the reply did not end (a busy machine, where the worker is not
        // running on another core, or long calls), only every 16th wait probes with a spin again.
        if (_missedSpins >= 4 && (++_waitsSinceProbe & 15) != 0)
            spin = 0;
        switch (Spin(sequence, spin, stop))
        {
            case true:
                _missedSpins = 0;
                return Replied(sequence);
            case false:
                _missedSpins++;
                break;
        }
        var reply = Word(ReplySeqOffset);
        var spunAfterWake = false;
        while (true)
        {
            Interlocked.Exchange(ref *Word(HostWaitingOffset), 1); // a full fence before re-reading the sequence
            var now = Volatile.Read(ref *reply);
            if (now == sequence)
                break;
            if (now != previous && now != sequence)
                throw new WorkerProtocolException($"the control block's reply sequence is {now}, expected {previous} or {sequence}");
            if (stop())
            {
                Volatile.Write(ref *Word(HostWaitingOffset), 0);
                return false;
            }
            if (Futex.Wait((nint)reply, now, SliceMicroseconds) && !spunAfterWake && Volatile.Read(ref *reply) != sequence)
            {
                // Rung ahead: the worker is copying a large result and replies when it is done, so this thread's
                // wake-up overlapped the copy; spin for the reply rather than sleep and be woken a second time.
                // Once per wait: a worker rings ahead once per reply, and one that kept ringing without replying
                // would otherwise turn each ring into a spin and keep this thread on a core for as long as it waits.
                spunAfterWake = true;
                Volatile.Write(ref *Word(HostWaitingOffset), 0);
                Spin(sequence, SpinMicroseconds, stop);
            }
        }
        Volatile.Write(ref *Word(HostWaitingOffset), 0);
        return Replied(sequence);
    }

    /// <summary>
    /// Spins up to <paramref name="microseconds"/> for reply <paramref name="sequence"/>: true when it came, false when
    /// the time ran out, null when there was no spin (no time, or no free spinner slot) or <paramref name="stop"/> said
    /// to give up.
    /// </summary>
    private bool? Spin(uint sequence, long microseconds, Func<bool> stop)
    {
        if (microseconds <= 0)
            return null;
        try
        {
            // Only as many spinning hosts as there are other cores: more would take the CPU the workers need.
            if (Interlocked.Increment(ref s_spinners) > Math.Max(1, Environment.ProcessorCount - 1))
                return null;
            var until = System.Diagnostics.Stopwatch.GetTimestamp() + microseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
            for (var i = 0; ; i++)
            {
                if (Volatile.Read(ref *Word(ReplySeqOffset)) == sequence)
                    return true;
                if ((i & 63) == 63 && System.Diagnostics.Stopwatch.GetTimestamp() > until)
                    return false;
                if ((i & 4095) == 4095 && stop())
                    return null; // a long spin (tests) notices a dead worker too: the caller's loop gives up at once
                Thread.SpinWait(8);
            }
        }
        finally
        {
            Interlocked.Decrement(ref s_spinners);
        }
    }

    private bool Replied(uint sequence)
    {
        _replied = sequence;
        return true;
    }

    /// <summary>
    /// Wakes the worker if it sleeps, ahead of a request whose payload is about to be copied: its wake-up then overlaps
    /// the copy, and it spins for the request (the worker spins after any wake that brought no request). No system call
    /// when the worker is awake.
    /// </summary>
    public void WakeWorkerAhead()
    {
        if (Volatile.Read(ref *Word(WorkerWaitingOffset)) != 0)
            Futex.Wake((nint)Word(RequestSeqOffset));
    }

    /// <summary>Wakes a host thread sleeping in <see cref="WaitForReply"/> (an abandoned call), so it re-checks at once.</summary>
    public void WakeHost() => Futex.Wake((nint)Word(ReplySeqOffset));

    /// <summary>
    /// The reply frame's body, copied out of the block (the worker could change the block while it is parsed); null when
    /// the reply went over the pipe.
    /// </summary>
    /// <exception cref="WorkerProtocolException">The reply length is out of range.</exception>
    public byte[]? ReadReply()
    {
        var length = Volatile.Read(ref *Word(ReplyLengthOffset));
        if (length == OnPipe)
            return null;
        if (length == 0 || length > AreaSize)
            throw new WorkerProtocolException($"the control block's reply length {length} is outside 1..{AreaSize}");
        return new ReadOnlySpan<byte>(_base + ReplyArea, (int)length).ToArray();
    }

    /// <summary>For tests: writes a word of the block as a hostile worker could.</summary>
    internal void WriteWordForTest(int offset, uint value)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)offset, (uint)(HeaderSize - 4));
        Volatile.Write(ref *Word(offset & ~3), value);
    }

    /// <summary>For tests: the reply sequence and length offsets.</summary>
    internal const int ReplySeqOffsetForTest = ReplySeqOffset, ReplyLengthOffsetForTest = ReplyLengthOffset;

    /// <summary>Drops the owner's reference to the mapping.</summary>
    public void Dispose() => _region.Dispose();
}
