// Design notes: ending the process at once, for the bounded exit of PythonRuntime.Shutdown. A normal exit runs C
// atexit handlers and native static destructors; some of them take the GIL (libtorch_python's do, PyTorch 2.6),
// so a thread that keeps the GIL makes exit() wait for ever. _exit (TerminateProcess on Windows) ends the process
// without them, with the exit code given. The entry points are resolved from the process itself (dlopen(NULL) sees
// libc's symbols; no library name to guess), once, when first needed.
using System.Runtime.InteropServices;

namespace Interop.Native;

internal static unsafe class ProcessEnd
{
    /// <summary>Ends the process now with <paramref name="exitCode"/>, without C atexit handlers or native static destructors.</summary>
    public static void Immediately(int exitCode)
    {
        if (OperatingSystem.IsWindows())
        {
            var kernel32 = NativeLibrary.Load("kernel32.dll");
            var current = (delegate* unmanaged<nint>)NativeLibrary.GetExport(kernel32, "GetCurrentProcess");
            var terminate = (delegate* unmanaged<nint, uint, int>)NativeLibrary.GetExport(kernel32, "TerminateProcess");
            // Safety: documented Win32 signatures (HANDLE GetCurrentProcess(void); BOOL TerminateProcess(HANDLE, UINT)).
            terminate(current(), unchecked((uint)exitCode));
            return;
        }
        var exit = (delegate* unmanaged<int, void>)NativeLibrary.GetExport(NativeLibrary.GetMainProgramHandle(), "_exit");
        // Safety: POSIX void _exit(int); it does not return.
        exit(exitCode);
    }
}
