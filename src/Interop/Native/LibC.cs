// Design notes: the few C library calls the isolated mode needs that .NET does not expose (Linux only).
// Entry points are resolved once from the process's own symbol table (the .NET host links the C library),
// not from a library name, so no "libc" name probing is involved. Unmanaged function pointers: no marshalling.
// Sources: posix_fallocate(3) (returns an error number instead of setting errno), strerror(3).
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Interop.Native;

internal static unsafe class LibC
{
    private static readonly delegate* unmanaged<int, long, long, int> s_posixFallocate =
        (delegate* unmanaged<int, long, long, int>)Resolve("posix_fallocate");

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

    /// <summary>A readable name for a C error number (e.g. ENOSPC: "No space left on device").</summary>
    public static string ErrorText(int error) => Marshal.GetPInvokeErrorMessage(error);
}
