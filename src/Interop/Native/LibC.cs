// Design notes: the few C library calls the isolated mode needs that .NET does not expose (Linux only).
// Entry points are resolved once from the process's own symbol table (the .NET host links the C library),
// not from a library name, so no "libc" name probing is involved. Unmanaged function pointers: no marshalling.
// Sources: posix_fallocate(3) (returns an error number instead of setting errno), strerror(3),
// process_vm_readv(2) / process_vm_writev(2) (struct iovec from <sys/uio.h>: void* iov_base; size_t iov_len).
// errno after a call through a function pointer: cleared before, read right after (Marshal.Get/SetLastSystemError), the
// pattern the runtime's own LibraryImport(SetLastError = true) stubs generate; the runtime preserves errno across the
// GC transition back to managed code.
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Interop.Native;

internal static unsafe class LibC
{
    private static readonly delegate* unmanaged<int, long, long, int> s_posixFallocate =
        (delegate* unmanaged<int, long, long, int>)Resolve("posix_fallocate");

    private static readonly delegate* unmanaged<int, Iovec*, nuint, Iovec*, nuint, nuint, nint> s_processVmReadv =
        (delegate* unmanaged<int, Iovec*, nuint, Iovec*, nuint, nuint, nint>)Resolve("process_vm_readv");

    private static readonly delegate* unmanaged<int, Iovec*, nuint, Iovec*, nuint, nuint, nint> s_processVmWritev =
        (delegate* unmanaged<int, Iovec*, nuint, Iovec*, nuint, nuint, nint>)Resolve("process_vm_writev");

    /// <summary>The ENOSYS error number (Linux, every architecture): returned when the C library lacks the function.</summary>
    public const int ENOSYS = 38;

    private static nint Resolve(string name) =>
        NativeLibrary.TryGetExport(NativeLibrary.GetMainProgramHandle(), name, out var address) ? address : 0;

    /// <summary>
    /// Reserves the pages of [0, <paramref name="length"/>) of an open file (and extends it to that length);
    /// 0 on success, else the error number (ENOSPC: the file system is full). Without the C function
    /// (not Linux) it only sets the length.
    /// </summary>
    public static int Fallocate(SafeFileHandle file, long length)
    {
        if (s_posixFallocate == null)
        {
            RandomAccess.SetLength(file, length);
            return 0;
        }
        var added = false;
        file.DangerousAddRef(ref added);
        try
        {
            return s_posixFallocate((int)file.DangerousGetHandle(), 0, length);
        }
        finally
        {
            if (added)
                file.DangerousRelease();
        }
    }

    /// <summary>
    /// process_vm_readv(2) (<paramref name="write"/> false) or process_vm_writev(2) (true) over a list of ranges, in one
    /// call: copies up to the sum of the ranges' lengths between process <paramref name="pid"/> (each range's
    /// <see cref="MemoryRange.Remote"/>) and this process (its <see cref="MemoryRange.Local"/>), range after range
    /// (reading: remote to local; writing: local to remote). At most <see cref="MaxRanges"/> ranges. Returns the bytes
    /// copied (fewer than asked at the first remote page that is not mapped, or not writable: the copy stops there), or -1
    /// with the error number in <paramref name="error"/> (EPERM: not allowed to access that process; ESRCH: no such
    /// process; EFAULT: the first remote range starts outside its memory; ENOSYS: no such call, e.g. not Linux or filtered
    /// by seccomp). The caller guarantees that every local range is memory of this process that it may read (and, reading,
    /// write) and that nothing else writes meanwhile; the remote side is checked by the kernel, never dereferenced here.
    /// </summary>
    public static long TransferProcessMemory(int pid, ReadOnlySpan<MemoryRange> ranges, bool write, out int error)
    {
        error = 0;
        if (ranges.Length is 0 or > MaxRanges)
            throw new ArgumentOutOfRangeException(nameof(ranges), ranges.Length, $"between 1 and {MaxRanges} ranges");
        var call = write ? s_processVmWritev : s_processVmReadv;
        if (call == null)
        {
            error = ENOSYS;
            return -1;
        }
        // Safety: both iovec arrays live on this stack frame for the duration of the call (at most 2 x 16 KiB); the kernel
        // touches only the local ranges here, which the caller vouches for.
        var count = ranges.Length;
        var local = stackalloc Iovec[count];
        var remote = stackalloc Iovec[count];
        for (var i = 0; i < count; i++)
        {
            var range = ranges[i];
            if (range.Length < 0)
                throw new ArgumentOutOfRangeException(nameof(ranges), range.Length, "a negative length");
            local[i] = new Iovec { Base = range.Local, Length = (nuint)range.Length };
            remote[i] = new Iovec { Base = (nint)range.Remote, Length = (nuint)range.Length };
        }
        Marshal.SetLastSystemError(0);
        var result = call(pid, local, (nuint)count, remote, (nuint)count, 0);
        if (result < 0)
            error = Marshal.GetLastSystemError();
        return result;
    }

    /// <summary>The most ranges one <see cref="TransferProcessMemory"/> call takes (IOV_MAX on Linux).</summary>
    public const int MaxRanges = 1024;

    /// <summary>One range of a <see cref="TransferProcessMemory"/> call: <see cref="Length"/> bytes at <see cref="Local"/> in this process and <see cref="Remote"/> in the other.</summary>
    internal readonly record struct MemoryRange(nint Local, long Remote, long Length);

    /// <summary>struct iovec (&lt;sys/uio.h&gt;).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Iovec
    {
        public nint Base;    // void* iov_base
        public nuint Length; // size_t iov_len
    }

    /// <summary>A readable name for a C error number (e.g. ENOSPC: "No space left on device").</summary>
    public static string ErrorText(int error) => Marshal.GetPInvokeErrorMessage(error);
}
