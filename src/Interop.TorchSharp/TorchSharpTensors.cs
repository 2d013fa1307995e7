// Design notes: TorchSharp tensors over foreign memory, and NumPy arrays over TorchSharp memory.
// - WrapMemory is the one way to build a TorchSharp tensor over memory it does not own: a from_blob with a
//   deleter (Native/LibTorchSharpNative.cs) plus as_strided for strided layouts. The owner is disposed exactly
//   once, when libtorch frees the storage (every tensor and view over it is gone), on whatever thread that
//   happens. A failed create disposes it at once.
// - Python buffers are owned through BufferOwner, which releases the Py_buffer without waiting for the GIL
//   (PythonBuffer.ReleaseWithoutWaiting: at once when the thread holds the GIL, else queued and drained by a
//   thread-pool item), so a libtorch deleter on a finalizer thread can never deadlock against a GIL holder.
// - libtorch has no negative strides and no read-only tensors: zero-copy refuses both (typed errors); the copy
//   mode handles them (flip for negative strides; read-only memory is only read).
// - NumPy arrays over TorchSharp memory are owned by a fresh tensor handle (detached from any dispose scope),
//   disposed when NumPy drops the array (NDArray.Share's owner).
using System.Collections.Concurrent;
using Interop.Buffers;
using Interop.DTypes;
using Interop.Embedding;
using Interop.Errors;
using Interop.NumPy;
using Interop.TorchSharp.Native;
using Python.Runtime;
using TorchSharp;

namespace Interop.TorchSharp;

/// <summary>Whether a conversion shares memory or copies it.</summary>
public enum TorchSharpMemory
{
    /// <summary>Zero-copy: the result uses the source's memory (writes are seen both ways) and keeps the source alive.</summary>
    Share,
    /// <summary>A copy owned by the result, independent of the source afterwards.</summary>
    Copy,
}

/// <summary>Conversions between Python buffers / NumPy arrays / native memory and TorchSharp tensors.</summary>
public static class TorchSharpTensors
{
    /// <summary>Foreign memory blocks currently held by TorchSharp storages created here (owners not yet disposed). For leak tests.</summary>
    public static int LiveWrappedMemory => MemoryReleaser.LiveCount;

    /// <summary>
    /// A TorchSharp CPU tensor over native memory at <paramref name="address"/>: <b>no copy</b>. libtorch calls back when
    /// the tensor's storage is freed (the returned tensor and every view of it disposed or collected); then
    /// <paramref name="owner"/> (may be null) is disposed, once, on whichever thread freed the storage (possibly a
    /// finalizer thread): its <c>Dispose</c> must not block on locks held by other threads. If this method throws,
    /// <paramref name="owner"/> has already been disposed.
    /// </summary>
    /// <param name="address">The address of element [0, 0, ...]; must stay valid until <paramref name="owner"/> is disposed.</param>
    /// <param name="dtype">The element dtype (from <see cref="DType"/>; its TorchSharp ScalarType is used).</param>
    /// <param name="shape">The dimensions.</param>
    /// <param name="stridesInElements">Strides in elements, non-negative (empty: C order).</param>
    /// <param name="owner">Disposed when libtorch no longer needs the memory.</param>
    /// <exception cref="TorchSharpDTypeException">TorchSharp has no such dtype (uint16/32/64).</exception>
    /// <exception cref="LayoutException">A negative stride (libtorch has none), or strides that do not match the shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension, or a shape/strides whose element count or extent overflows 64 bits.</exception>
    public static torch.Tensor WrapMemory(nint address, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<long> stridesInElements, IDisposable? owner)
    {
        torch.ScalarType scalar;
        long[] strides;
        try
        {
            ArgumentNullException.ThrowIfNull(dtype);
            if (!stridesInElements.IsEmpty && stridesInElements.Length != shape.Length)
                throw new ArgumentException($"{stridesInElements.Length} strides given for {shape.Length} dimensions.", nameof(stridesInElements));
            foreach (var d in shape)
                ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
            foreach (var s in stridesInElements)
                if (s < 0)
                    throw NegativeStrides();
            var count = CheckedElementCount(shape);
            if (address == 0 && count != 0)
                throw new ArgumentException("The address is null.", nameof(address));
            TorchSharpSupport.EnsureLoadable();
            scalar = ScalarTypeOf(dtype);
            strides = stridesInElements.IsEmpty ? ContiguousStrides(shape) : stridesInElements.ToArray();
            if (count != 0)
                _ = CheckedExtent(shape.ToArray(), strides, dtype.ItemSize);
        }
        catch
        {
            owner?.Dispose();
            throw;
        }
        // From here the storage's deleter owns the owner (a failed create calls it too), so it is disposed exactly once.
        return WrapCore(address, scalar, shape.ToArray(), strides, owner);
    }

    /// <summary>
    /// A TorchSharp tensor from any object that exports a Python buffer (ndarray, bytes, bytearray, memoryview, array.array, ...),
    /// of the dtype the buffer's format gives (the dtype table's ScalarType). <see cref="TorchSharpMemory.Share"/>: over the
    /// buffer's memory, holding the buffer until libtorch frees the storage; <see cref="TorchSharpMemory.Copy"/>: a C-contiguous
    /// TorchSharp-owned copy.
    /// </summary>
    /// <exception cref="ReadOnlyBufferException">Share of a read-only buffer (a libtorch tensor cannot be read-only): copy instead.</exception>
    /// <exception cref="LayoutException">Share of negative strides or strides that are not whole elements: copy instead.</exception>
    /// <exception cref="ByteOrderException">Share of big-endian data: copy instead (the copy swaps bytes).</exception>
    /// <exception cref="TorchSharpDTypeException">TorchSharp has no such dtype.</exception>
    /// <exception cref="UnsupportedDTypeException">The buffer's format is outside the dtype table.</exception>
    public static torch.Tensor FromBuffer(PyObject exporter, TorchSharpMemory memory)
    {
        ArgumentNullException.ThrowIfNull(exporter);
        TorchSharpSupport.EnsureLoadable();
        // The GIL is held only to acquire the buffer: the Py_buffer keeps the memory valid, so wrapping and copying run without it.
        PythonBuffer buffer;
        using (PythonRuntime.AcquireGil())
            buffer = PythonBuffer.Acquire(exporter, writable: false);
        try
        {
            var scalar = ScalarTypeOf(buffer.DType);
            if (memory == TorchSharpMemory.Share)
                return Share(buffer, scalar);
            if (!buffer.Format.IsNativeOrder)
            {
                buffer.Dispose();
                var swapped = PythonRuntime.Run(() => NativeOrderCopy(exporter));
                try
                {
                    return FromBuffer(swapped, TorchSharpMemory.Copy);
                }
                finally
                {
                    using (PythonRuntime.AcquireGil())
                        swapped.Dispose();
                }
            }
            using (buffer)
                return Copy(buffer);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private static torch.Tensor Share(PythonBuffer buffer, torch.ScalarType scalar)
    {
        if (!buffer.Format.IsNativeOrder)
            throw new ByteOrderException(buffer.DType.Name);
        if (buffer.ReadOnly)
            throw new ReadOnlyBufferException("A zero-copy TorchSharp tensor",
                "libtorch has no read-only tensors, so read-only memory is never shared; copy instead (TorchSharpMemory.Copy, CopyToTorchSharp), " +
                "or make the array writable in NumPy (arr.copy()).");
        var strides = ElementStrides(buffer);
        if (strides.Any(s => s < 0))
            throw NegativeStrides();
        // The owner releases the Py_buffer when libtorch frees the storage; a failed create releases it at once.
        return WrapCore(buffer.Pointer, scalar, buffer.Shape.Select(d => (long)d).ToArray(), strides, new BufferOwner(buffer));
    }

    // Only read while the buffer is held (this method's caller disposes it): no owner needed.
    private static torch.Tensor Copy(PythonBuffer buffer) =>
        CopyStrided(buffer.Pointer, buffer.DType, buffer.Shape.Select(d => (long)d).ToArray(), buffer.Strides.Select(s => (long)s).ToArray());

    /// <summary>
    /// A new C-contiguous TorchSharp tensor with the elements of any strided layout (byte strides, read while the caller
    /// keeps the memory valid). libtorch strides count elements and cannot be negative, so the source is viewed from its
    /// lowest address with the reversed dimensions flipped back; byte strides that are not whole elements (a field of a
    /// record array) are copied through a byte view with one more dimension for the bytes of an element. Bools come out
    /// canonical (0 or 1) whatever bytes the source holds.
    /// </summary>
    /// <exception cref="TorchSharpDTypeException">TorchSharp has no such dtype.</exception>
    internal static torch.Tensor CopyStrided(nint address, DType dtype, long[] shape, long[] byteStrides)
    {
        var scalar = ScalarTypeOf(dtype);
        if (Layout.ElementCount(shape) == 0)
            return torch.empty(shape, scalar);
        var itemSize = dtype.ItemSize;
        var strides = new long[shape.Length];
        var start = address;
        var flipped = new List<long>();
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] <= 1)
                continue; // no meaningful stride
            strides[i] = byteStrides[i];
            if (strides[i] < 0)
            {
                start += (nint)((shape[i] - 1) * strides[i]);
                strides[i] = -strides[i];
                flipped.Add(i);
            }
        }
        if (dtype == DType.Bool)
        {
            // A bool byte may hold any value (a reinterpreting NumPy view: arr.view(np.bool_)); read the bytes as uint8 and let
            // libtorch's uint8 -> bool conversion (nonzero is true, NumPy's truth) write canonical 0/1 into the copy.
            using var raw = WrapCore(start, torch.ScalarType.Byte, shape, strides, owner: null);
            using var ordered = flipped.Count > 0 ? raw.flip([.. flipped]) : null;
            var result = torch.empty(shape, scalar);
            try
            {
                result.copy_(ordered ?? raw);
                return result;
            }
            catch
            {
                result.Dispose();
                throw;
            }
        }
        if (strides.All(s => s % itemSize == 0))
        {
            using var source = WrapCore(start, scalar, shape, [.. strides.Select(s => s / itemSize)], owner: null);
            if (flipped.Count > 0)
                return source.flip([.. flipped]); // the flip is the copy
            var result = torch.empty(shape, scalar);
            result.copy_(source);
            return result;
        }
        long[] byteShape = [.. shape, itemSize];
        var bytes = torch.empty(shape, scalar);
        try
        {
            using var source = WrapCore(start, torch.ScalarType.Byte, byteShape, [.. strides, 1], owner: null);
            using var ordered = flipped.Count > 0 ? source.flip([.. flipped]) : null;
            using var destination = WrapCore(LibTorchSharpNative.THSTensor_data(bytes.Handle), torch.ScalarType.Byte, byteShape, ContiguousStrides(byteShape), owner: null);
            destination.copy_(ordered ?? source);
            return bytes;
        }
        catch
        {
            bytes.Dispose();
            throw;
        }
    }

    private static PyObject NativeOrderCopy(PyObject exporter)
    {
        using var np = PythonRuntime.Import("numpy");
        using var array = np.InvokeMethod("asarray", exporter);
        using var dtype = array.GetAttr("dtype");
        using var order = new PyString("=");
        using var native = dtype.InvokeMethod("newbyteorder", order);
        return array.InvokeMethod("astype", native);
    }

    // ---- TorchSharp -> NumPy ------------------------------------------------------------------

    /// <summary>
    /// An ndarray over the tensor's memory (<b>no copy</b> for CPU tensors; writes are seen both ways), with the tensor's
    /// strides (non-contiguous tensors are not compacted). The array keeps the tensor's storage alive (through its own
    /// tensor handle) until NumPy drops it. A tensor on another device is first copied to the CPU (then the array shares
    /// that copy); a lazy conjugate or negative view is resolved first (a copy). Requires-grad tensors are detached by default, bfloat16 is refused unless upcast (see <paramref name="options"/>).
    /// </summary>
    public static NDArray AsNumPy(torch.Tensor tensor, TorchSharpExportOptions? options = null)
    {
        var prepared = Prepare(tensor, options ?? TorchSharpExportOptions.Default);
        try
        {
            var dtype = DTypeOf(prepared.dtype);
            var shape = prepared.shape;
            if (prepared.numel() == 0)
            {
                prepared.Dispose();
                return NDArray.Empty(dtype, shape);
            }
            var strides = prepared.stride().Select(s => s * dtype.ItemSize).ToArray();
            var address = LibTorchSharpNative.THSTensor_data(prepared.Handle);
            return NDArray.Share(address, dtype, shape, strides, owner: prepared, readOnly: false);
        }
        catch
        {
            prepared.Dispose();
            throw;
        }
    }

    /// <summary>A new C-contiguous ndarray with a copy of the tensor's elements (any layout, any device; same policy as <see cref="AsNumPy"/>).</summary>
    public static NDArray ToNumPy(torch.Tensor tensor, TorchSharpExportOptions? options = null)
    {
        using var prepared = Prepare(tensor, options ?? TorchSharpExportOptions.Default);
        var result = NDArray.Empty(DTypeOf(prepared.dtype), prepared.shape);
        try
        {
            if (prepared.numel() != 0)
            {
                using var destination = FromBuffer(result.PyObject, TorchSharpMemory.Share);
                destination.copy_(prepared);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>A new tensor handle (out of any dispose scope) that is on the CPU, detached if allowed, and of a dtype NumPy has.</summary>
    private static torch.Tensor Prepare(torch.Tensor tensor, TorchSharpExportOptions options)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        TorchSharpSupport.EnsureLoadable();
        // The PyTorch side's refusals (torch_export.py): no strided memory, or no data at all. Sparse first: libtorch
        // cannot even report a sparse tensor's device through TorchSharp (it asks for a data pointer).
        if (tensor.is_sparse)
            throw new TensorLayoutNotSupportedException("A sparse TorchSharp tensor cannot be exported: NumPy shares only strided (dense) memory. " +
                                                        "Fix: call tensor.to_dense() first.", null);
        if (tensor.device_type == DeviceType.META)
            throw new TensorDeviceNotSupportedException("A TorchSharp tensor on the 'meta' device has shapes but no data, so it cannot be exported. " +
                                                        "Fix: create or compute it on a real device (torch.CPU).", null);
        if (tensor.requires_grad && !options.Detach)
            throw new TorchSharpRequiresGradException();
        var result = tensor.detach();
        try
        {
            if (result.device_type != DeviceType.CPU)
                Replace(ref result, result.cpu());
            // Lazy conjugate / negative views (conj() of a complex tensor, the imag of such a view) are flag bits over
            // memory that does not hold their values: resolve them (a copy), as the PyTorch side's policy does.
            if (result.is_conj())
                Replace(ref result, result.resolve_conj());
            if (result.is_neg())
                Replace(ref result, result.resolve_neg());
            var dtype = FindDType(result.dtype);
            if (dtype is null) // quantized: to(float32) refuses them, dequantize() is the way
                throw new TorchSharpDTypeException($"NumPy has no {result.dtype} dtype (quantized types have no row in the dtype table). " +
                                                   "Fix: call tensor.dequantize() first (gives float32).", result.dtype.ToString());
            if (dtype.NumPyName is null)
            {
                if (!options.Upcast || dtype.Kind != DTypeKind.Float)
                    throw new TorchSharpDTypeException($"NumPy has no {dtype.Name} dtype. Fix: " +
                        (dtype.Kind == DTypeKind.Float ? "set TorchSharpExportOptions.Upcast (widens to float32, a copy), or " : "") +
                        "convert the tensor first, e.g. tensor.to(torch.float32).", dtype.Name);
                Replace(ref result, result.to(torch.ScalarType.Float32));
            }
            return result.DetachFromDisposeScope();
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private static void Replace(ref torch.Tensor tensor, torch.Tensor replacement)
    {
        tensor.Dispose();
        tensor = replacement;
    }

    // ---- shared helpers ----------------------------------------------------------------------

    /// <summary>TorchSharp's ScalarType for <paramref name="dtype"/>, from the dtype table.</summary>
    /// <exception cref="TorchSharpDTypeException">The table has none (TorchSharp lacks the dtype).</exception>
    public static torch.ScalarType ScalarTypeOf(DType dtype)
    {
        ArgumentNullException.ThrowIfNull(dtype);
        return dtype.TorchSharpScalarType is { } code ? (torch.ScalarType)code : throw TorchSharpDTypeException.NoScalarType(dtype);
    }

    /// <summary>The dtype-table row of a TorchSharp ScalarType.</summary>
    /// <exception cref="TorchSharpDTypeException">The table has none (quantized types).</exception>
    public static DType DTypeOf(torch.ScalarType scalarType) =>
        FindDType(scalarType)
        ?? throw new TorchSharpDTypeException($"TorchSharp's {scalarType} has no row in the dtype table (quantized types are not mapped). Fix: dequantize or convert the tensor first.", scalarType.ToString());

    private static DType? FindDType(torch.ScalarType scalarType) => DType.All.FirstOrDefault(d => d.TorchSharpScalarType == (int)scalarType);

    private static torch.Tensor WrapCore(nint address, torch.ScalarType scalar, long[] shape, long[] strides, IDisposable? owner)
    {
        var count = Layout.ElementCount(shape);
        if (count == 0 || IsContiguous(shape, strides))
            return torch.Tensor.UnsafeCreateTensor(MemoryReleaser.Create(address, shape, scalar, owner));
        // A flat tensor over every element the strides reach, then the strided view of it (the view holds the storage).
        var extent = CheckedExtent(shape, strides);
        using var flat = torch.Tensor.UnsafeCreateTensor(MemoryReleaser.Create(address, [extent], scalar, owner));
        return flat.as_strided(shape, strides, 0);
    }

    /// <summary>The buffer's strides in elements; a dimension of length 0 or 1 (or an empty array) has no meaningful stride and gets 0.</summary>
    private static long[] ElementStrides(PythonBuffer buffer)
    {
        var itemSize = buffer.DType.ItemSize;
        var strides = new long[buffer.Strides.Length];
        for (var i = 0; i < strides.Length; i++)
        {
            if (buffer.Shape[i] <= 1 || buffer.ElementCount == 0)
                continue;
            if (buffer.Strides[i] % itemSize != 0)
                throw new LayoutException($"Stride {buffer.Strides[i]} bytes of dimension {i} is not a whole number of {buffer.DType.Name} elements " +
                    "(a record field or misaligned view); libtorch strides count elements. Fix: np.ascontiguousarray(arr) first.");
            strides[i] = buffer.Strides[i] / itemSize;
        }
        return strides;
    }

    private static LayoutException NegativeStrides() =>
        new("The layout has negative strides (e.g. arr[::-1]), which libtorch tensors cannot express, so it cannot be shared. " +
            "Fix: copy (TorchSharpMemory.Copy / CopyToTorchSharp reverses into a new tensor), or np.ascontiguousarray(arr) in NumPy first.");

    private static long CheckedElementCount(ReadOnlySpan<long> shape)
    {
        try
        {
            return Layout.ElementCount(shape);
        }
        catch (OverflowException)
        {
            throw new ArgumentOutOfRangeException(nameof(shape), $"The shape ({string.Join(", ", shape.ToArray())}) holds more elements than a 64-bit count: no memory block can back it.");
        }
    }

    /// <summary>The number of elements from the first to the last one the strides reach (what the storage must hold).</summary>
    private static long CheckedExtent(long[] shape, long[] stridesInElements, int itemSize = 1)
    {
        try
        {
            long extent = 1;
            for (var i = 0; i < shape.Length; i++)
                extent = checked(extent + checked((shape[i] - 1) * stridesInElements[i]));
            _ = checked(extent * itemSize); // libtorch sizes the storage in bytes
            return extent;
        }
        catch (OverflowException)
        {
            throw new ArgumentOutOfRangeException(nameof(stridesInElements), $"The strides ({string.Join(", ", stridesInElements)}) reach beyond a 64-bit offset for shape ({string.Join(", ", shape)}): no memory block can back them.");
        }
    }

    private static long[] ContiguousStrides(ReadOnlySpan<long> shape) => Layout.CContiguousStrides(shape, 1);

    private static bool IsContiguous(long[] shape, long[] strides)
    {
        long expected = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] != 1 && strides[i] != expected)
                return false;
            expected *= shape[i];
        }
        return true;
    }

    /// <summary>Owns one acquired Python buffer inside a libtorch storage.</summary>
    private sealed class BufferOwner(PythonBuffer buffer) : IDisposable
    {
        public void Dispose() => buffer.ReleaseWithoutWaiting();
    }
}

/// <summary>The deleter for one from_blob storage: rooted until libtorch calls it, then disposes the owner once.</summary>
internal sealed class MemoryReleaser
{
    private static readonly ConcurrentDictionary<MemoryReleaser, byte> s_live = new();
    private readonly StorageDeleter _deleter;
    private IDisposable? _owner;
    private int _released;

    private MemoryReleaser(IDisposable? owner)
    {
        _owner = owner;
        _deleter = Release;
    }

    public static int LiveCount => s_live.Count;

    /// <summary>Calls THSTensor_new; on failure disposes the owner (if libtorch did not already) and throws TorchSharp's error.</summary>
    public static nint Create(nint address, long[] shape, torch.ScalarType scalar, IDisposable? owner)
    {
        var releaser = new MemoryReleaser(owner);
        s_live.TryAdd(releaser, 0);
        nint handle;
        try
        {
            handle = LibTorchSharpNative.THSTensor_new(address, releaser._deleter, shape, shape.Length, (sbyte)scalar, (sbyte)scalar,
                LibTorchSharpNative.DeviceTypeCpu, -1, requiresGrad: false);
        }
        catch
        {
            releaser.Release(address);
            throw;
        }
        if (handle == 0)
        {
            releaser.Release(address);
            torch.CheckForErrors();
            throw new InvalidOperationException("THSTensor_new returned no tensor and no error.");
        }
        return handle;
    }

    private void Release(nint data)
    {
        // libtorch's deleter: any thread, maybe a finalizer, maybe without the GIL. Exceptions must not reach native code.
        if (Interlocked.Exchange(ref _released, 1) != 0)
            return;
        s_live.TryRemove(this, out _);
        try
        {
            Interlocked.Exchange(ref _owner, null)?.Dispose();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"[interop] releasing memory held by a TorchSharp tensor failed: {e}");
        }
    }
}
