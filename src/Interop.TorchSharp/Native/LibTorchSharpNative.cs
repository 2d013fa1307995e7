// Design notes: the one native boundary to libLibTorchSharp (TorchSharp's C shim over libtorch). TorchSharp has no
// public factory over foreign memory, so two of its exports are declared here; everything else goes through
// TorchSharp's public API. Same library name as TorchSharp's own declarations ("LibTorchSharp"), so the runtime
// resolves the copy TorchSharp loaded; call only after TorchSharpSupport.EnsureLoadable (which loads it).
// Signatures: TorchSharp's src/Native/LibTorchSharp/THSTensor.h (THSTensor_new, THSTensor_data).
// Safety: no unsafe code. THSTensor_new is torch::from_blob(data, sizes, deleter, options): the tensor aliases
// `data` until libtorch frees the storage and then calls `deleter(data)` exactly once, on whichever thread drops
// the last reference (a .NET finalizer thread, a Python capsule destructor, any thread), possibly without the GIL.
// The delegate handed over is marshalled to a native thunk that lives only as long as the delegate, so each
// delegate is rooted (MemoryReleaser.s_live) until libtorch has called it.
using System.Runtime.InteropServices;

namespace Interop.TorchSharp.Native;

/// <summary>The deleter libtorch calls with the data pointer once the storage is freed.</summary>
[UnmanagedFunctionPointer(CallingConvention.Cdecl)]
internal delegate void StorageDeleter(nint data);

internal static partial class LibTorchSharpNative
{
    private const string Library = "LibTorchSharp";

    /// <summary>CPU, as in c10::DeviceType.</summary>
    public const int DeviceTypeCpu = 0;

    /// <summary>
    /// <c>Tensor THSTensor_new(void* data, void (*deleter)(void*), const int64_t* sizes, int szlength, int8_t scalar_type,
    /// int8_t dtype, int device_type, int device_index, bool requires_grad)</c>: a C-contiguous tensor over
    /// <paramref name="data"/>. Returns null with TorchSharp's last error set on failure.
    /// </summary>
#pragma warning disable SYSLIB1054, CA5392 // marshalled delegate on purpose (no unsafe code in this project); resolved like TorchSharp's own imports
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    public static extern nint THSTensor_new(nint data, StorageDeleter deleter, long[] sizes, int szlength, sbyte scalarType,
        sbyte dtype, int deviceType, int deviceIndex, [MarshalAs(UnmanagedType.U1)] bool requiresGrad);

    /// <summary><c>void* THSTensor_data(const Tensor tensor)</c>: the address of the first element (storage offset included).</summary>
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    public static extern nint THSTensor_data(nint tensor);
#pragma warning restore SYSLIB1054, CA5392
}
