// Design notes: holding a worker across several requests (WorkerProcess.Hold), and its direct memory reads.
// - Hold() takes the worker's exchange gate for the calling thread until the hold is disposed. Exchange on the same thread
//   passes the gate (re-entrant for the holder); other callers queue as usual. Used by transfers that read the worker's
//   memory directly between requests (WorkerMemory): no other caller's code runs in the worker while they read, so the
//   memory the worker described stays as it was described.
// - The hold counts as load (the pool prefers other workers) and as a user of the process (TryEnter/Leave), so a
//   concurrent Dispose releases nothing under it. A hold must be disposed on the thread that took it.
namespace Interop.Isolated;

internal sealed partial class WorkerProcess
{
    private int _holderThread; // managed thread id of the Hold() owner, 0: none

    private bool HeldByThisThread => Volatile.Read(ref _holderThread) == Environment.CurrentManagedThreadId;

    /// <summary>
    /// Takes the exchange gate for this thread until the returned hold is disposed: this thread's requests go through,
    /// other callers wait. Not re-entrant itself (one hold per worker at a time).
    /// </summary>
    /// <exception cref="Errors.WorkerCrashedException">The worker is gone.</exception>
    public IDisposable Hold(CancellationToken cancellationToken = default)
    {
        if (HeldByThisThread)
            throw new InvalidOperationException("this thread already holds the worker");
        if (!Admit(loadReserved: false, takeGate: true, cancellationToken))
            throw CrashInfo();
        Volatile.Write(ref _holderThread, Environment.CurrentManagedThreadId);
        return new GateHold(this);
    }

    /// <summary>
    /// The worker vanished under a direct memory read (the kernel found no such process): marks it dead and returns the
    /// crash report (exit status and stderr tail) that its callers get.
    /// </summary>
    public Errors.WorkerCrashedException DiedDuringDirectCopy()
    {
        _dead = true;
        if (TryEnter())
        {
            try
            {
                _process.WaitForExit(2000);
            }
            finally
            {
                Leave();
            }
        }
        return CrashInfo();
    }

    private sealed class GateHold(WorkerProcess worker) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Volatile.Read(ref _done) != 0)
                return;
            if (!worker.HeldByThisThread)
                throw new InvalidOperationException("a worker hold must be released on the thread that took it");
            _done = 1;
            Volatile.Write(ref worker._holderThread, 0);
            worker.Depart(releaseGate: true);
        }
    }
}
