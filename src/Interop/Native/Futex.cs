// Design notes: the cross-process futex of the isolated mode's control block (Linux; see docs/isolated.md).
// futex(2) on a word of a MAP_SHARED mapping, without FUTEX_PRIVATE_FLAG, so that a waiter in one process is woken by
// a FUTEX_WAKE from another process that maps the same file. Reached through syscall(2) (glibc has no wrapper); the
// syscall number depends on the architecture (x86-64: 202, arm64/loongarch64/riscv64: 98). Where it is unknown,
// Wait sleeps for a short slice instead (callers re-check their word, so that is slower, never wrong).
using System.Runtime.InteropServices;

namespace Interop.Native;

internal static unsafe class Futex
{
    private const int FutexWait = 0;
    private const int FutexWake = 1;

    private static readonly delegate* unmanaged<long, nint, int, uint, Timespec*, nint, int, long> s_syscall =
        (delegate* unmanaged<long, nint, int, uint, Timespec*, nint, int, long>)
        (NativeLibrary.TryGetExport(NativeLibrary.GetMainProgramHandle(), "syscall", out var address) ? address : 0);

    private static readonly long s_number = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 or Architecture.LoongArch64 or Architecture.RiscV64 => 98,
        _ => -1,
    };

    /// <summary>True when the futex system call is reachable (otherwise waits are short sleeps).</summary>
    public static bool Available => s_syscall != null && s_number >= 0 && OperatingSystem.IsLinux();

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;      // time_t tv_sec
        public long Nanoseconds;  // long tv_nsec
    }

    /// <summary>
    /// Sleeps while the 32-bit word at <paramref name="address"/> holds <paramref name="expected"/>, at most
    /// <paramref name="microseconds"/> (a wake, a changed word, a timeout or a signal all return; callers re-check).
    /// Returns true when a FUTEX_WAKE ended the sleep.
    /// </summary>
    /// <remarks>Safety: <paramref name="address"/> must point at a 4-byte aligned word of a live shared mapping.</remarks>
    public static bool Wait(nint address, uint expected, long microseconds)
    {
        if (!Available)
        {
            Thread.Sleep(TimeSpan.FromMicroseconds(Math.Min(microseconds, 1000)));
            return false;
        }
        var timeout = new Timespec { Seconds = microseconds / 1_000_000, Nanoseconds = microseconds % 1_000_000 * 1000 };
        return s_syscall(s_number, address, FutexWait, expected, &timeout, 0, 0) == 0;
    }

    /// <summary>Wakes the waiters (any process) sleeping on the word at <paramref name="address"/>.</summary>
    /// <remarks>Safety: <paramref name="address"/> must point at a 4-byte aligned word of a live shared mapping.</remarks>
    public static void Wake(nint address)
    {
        if (Available)
            _ = s_syscall(s_number, address, FutexWake, int.MaxValue, null, 0, 0);
    }
}
