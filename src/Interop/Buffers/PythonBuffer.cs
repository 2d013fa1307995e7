// Design notes: the owner of one acquired Py_buffer.
// - Acquire requires the GIL. The Py_buffer lives in native memory so that its address never moves.
// - Release needs the GIL. Dispose takes it (reentrantly). The finalizer never waits for the GIL: it
//   queues the Py_buffer, and the next thread that takes the GIL releases queued buffers (Gil.Acquire
//   drains the queue). So a finalizer cannot deadlock against a thread that holds the GIL and waits for
//   finalizers, and nothing leaks as long as Python is used again. After Python shut down, nothing is released.
// - Dispose is idempotent and thread-safe (Interlocked on the pointer).
using System.Collections.Concurrent;
using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Embedding;
using Interop.Errors;
using Interop.Native;
using PyObject = Python.Runtime.PyObject;

namespace Interop.Buffers;

/// <summary>An acquired Python buffer: pointer, shape, strides (bytes), dtype and read-only flag. Valid until disposed.</summary>
internal sealed unsafe class PythonBuffer : IDisposable
{
    private static readonly ConcurrentQueue<nint> s_pendingReleases = new();
    private nint _view; // PyBuffer*, 0 once released

    private PythonBuffer(PyBuffer* view, ParsedFormat format)
    {
        _view = (nint)view;
        Pointer = (nint)view->Buf;
        ByteLength = view->Len;
        ReadOnly = view->ReadOnly != 0;
        Format = format;
        var ndim = view->NDim;
        Shape = new nint[ndim];
        Strides = new nint[ndim];
        for (var i = 0; i < ndim; i++)
        {
            Shape[i] = view->Shape[i];
            Strides[i] = view->Strides is null ? 0 : view->Strides[i];
        }
        if (view->Strides is null)
            Layout.CContiguousStrides(Shape, format.DType.ItemSize, Strides);
        ElementCount = Layout.ElementCount(Shape);
    }

    /// <summary>The address of element [0, 0, ...].</summary>
    public nint Pointer { get; }

    /// <summary>Bytes covered by the elements (product of the shape × item size).</summary>
    public nint ByteLength { get; }

    /// <summary>True when the exporter forbids writes.</summary>
    public bool ReadOnly { get; }

    /// <summary>The element dtype and byte order.</summary>
    public ParsedFormat Format { get; }

    /// <summary>The dimensions.</summary>
    public nint[] Shape { get; }

    /// <summary>The number of elements (product of the shape).</summary>
    public nint ElementCount { get; }

    /// <summary>The byte strides (may be negative or zero).</summary>
    public nint[] Strides { get; }

    /// <summary>The element dtype.</summary>
    public DType DType => Format.DType;

    /// <summary>True until disposed.</summary>
    public bool IsAlive => Volatile.Read(ref _view) != 0;

    /// <summary>Acquires the buffer of <paramref name="obj"/>. Requires the GIL.</summary>
    /// <exception cref="ReadOnlyBufferException"><paramref name="writable"/> was asked of a read-only exporter.</exception>
    /// <exception cref="UnsupportedDTypeException">The element format is not in the dtype table.</exception>
    /// <exception cref="IndirectBufferException">The exporter uses suboffsets.</exception>
    public static PythonBuffer Acquire(PyObject obj, bool writable) =>
        Acquire(CPython.Address(obj), writable); // Address throws for a disposed object, before anything is allocated

    /// <summary>Acquires the buffer of the object at <paramref name="exporter"/> (borrowed: alive for the call). Requires the GIL.</summary>
    /// <exception cref="ReadOnlyBufferException"><paramref name="writable"/> was asked of a read-only exporter.</exception>
    /// <exception cref="UnsupportedDTypeException">The element format is not in the dtype table.</exception>
    /// <exception cref="IndirectBufferException">The exporter uses suboffsets.</exception>
    public static PythonBuffer Acquire(nint exporter, bool writable)
    {
        Gil.AssertHeld();
        var view = (PyBuffer*)System.Runtime.InteropServices.NativeMemory.AllocZeroed((nuint)sizeof(PyBuffer));
        var flags = writable ? PyBufferFlags.Full : PyBufferFlags.FullReadOnly;
        // Safety: obj is alive (pythonnet holds a reference) and the GIL is held; view is a zeroed Py_buffer.
        if (CPython.PyObject_GetBuffer(exporter, view, (int)flags) != 0)
        {
            System.Runtime.InteropServices.NativeMemory.Free(view);
            var error = PythonErrors.FetchPending("PyObject_GetBuffer");
            using var obj = CPython.Borrow(exporter);
            throw TranslateGetBufferError(obj, error, writable);
        }
        LiveObjects.BufferAcquired();
        try
        {
            if (view->SubOffsets is not null)
            {
                for (var i = 0; i < view->NDim; i++)
                    if (view->SubOffsets[i] >= 0)
                        throw new IndirectBufferException();
            }
            var format = ParseFormat(view->Format);
            if (format.DType.ItemSize != view->ItemSize)
                throw new UnsupportedDTypeException($"an element of {view->ItemSize} bytes declared as '{new string((sbyte*)view->Format)}'", new string((sbyte*)view->Format));
            return new PythonBuffer(view, format);
        }
        catch
        {
            ReleaseNow((nint)view);
            throw;
        }
    }

    /// <summary>
    /// Copies <paramref name="source"/> into the memory of a C-contiguous writable exporter of exactly that many bytes (a
    /// fresh <c>np.empty</c>), through a plain PyBUF_WRITABLE request on a stack Py_buffer: no format, shape or
    /// strides are asked for, and no owner object is made, because the exporter guarantees contiguity for such a
    /// request (NumPy refuses a non-contiguous array) and the byte count is checked. Requires the GIL.
    /// </summary>
    /// <exception cref="LayoutException">The exporter's buffer does not hold exactly <paramref name="source"/>.Length bytes.</exception>
    public static void CopyIntoContiguous(nint exporter, ReadOnlySpan<byte> source)
    {
        Gil.AssertHeld();
        PyBuffer view = default;
        // Safety: exporter is alive (the caller holds it) and the GIL is held; view lives on this stack frame until released below.
        if (CPython.PyObject_GetBuffer(exporter, &view, (int)PyBufferFlags.Writable) != 0)
            throw PythonErrors.FetchPending("PyObject_GetBuffer");
        try
        {
            if (view.Len != source.Length)
                throw new LayoutException($"The buffer holds {view.Len} bytes where {source.Length} were expected; refusing an inconsistent exporter.");
            source.CopyTo(new Span<byte>(view.Buf, source.Length));
        }
        finally
        {
            CPython.PyBuffer_Release(&view);
        }
    }

    // The formats parsed last (a few, e.g. "<f" and "f"): exporters hand out the same few strings over and over, so most
    // acquisitions compare a few bytes instead of allocating a string and parsing it. Entries are immutable; a race
    // between threads only costs a parse.
    private static readonly FormatEntry?[] s_recentFormats = new FormatEntry?[4]; // references: read and written atomically
    private static int s_nextRecent;

    private static ParsedFormat ParseFormat(byte* format)
    {
        if (format is null)
            return BufferFormat.Parse(null);
        var bytes = System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpanFromNullTerminated(format);
        foreach (var entry in s_recentFormats)
            if (entry is not null && bytes.SequenceEqual(entry.Bytes))
                return entry.Format;
        var parsed = BufferFormat.Parse(new string((sbyte*)format));
        if (bytes.Length <= 16)
            s_recentFormats[Interlocked.Increment(ref s_nextRecent) & (s_recentFormats.Length - 1)] = new FormatEntry(bytes.ToArray(), parsed);
        return parsed;
    }

    private sealed record FormatEntry(byte[] Bytes, ParsedFormat Format);

    private static InteropException TranslateGetBufferError(PyObject obj, PythonErrorException error, bool writable)
    {
        // NumPy says "buffer source array is read-only"; bytes and memoryview say "Object is not writable."
        if (writable && (error.PythonMessage.Contains("not writable", StringComparison.OrdinalIgnoreCase) ||
                         error.PythonMessage.Contains("read-only", StringComparison.OrdinalIgnoreCase)))
            return new ReadOnlyBufferException("A writable view");
        if (error.PythonMessage.Contains("cannot include dtype", StringComparison.Ordinal) ||
            error.PythonMessage.Contains("buffer format", StringComparison.Ordinal))
        {
            var dtype = obj.HasAttr("dtype") ? obj.GetAttr("dtype").ToString() ?? "?" : "?";
            return new UnsupportedDTypeException($"'{dtype}' ({error.PythonMessage})", null);
        }
        return error;
    }

    /// <summary>
    /// Copies <paramref name="source"/> (C order) into the buffer's memory over its strides, in the buffer's byte order
    /// (bools written canonical: 0 or 1).
    /// The one write path for .NET data into existing Python memory; needs no GIL (the buffer keeps the memory alive).
    /// </summary>
    /// <exception cref="ElementTypeMismatchException"><typeparamref name="T"/> is not the buffer's element type.</exception>
    /// <exception cref="ArgumentException"><paramref name="source"/> does not hold exactly <see cref="ElementCount"/> elements.</exception>
    public void Scatter<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        if (DType.ClrType != typeof(T))
            throw new ElementTypeMismatchException(typeof(T), DType.Name, DType.ClrType);
        if (source.Length != ElementCount)
            throw new ArgumentException($"The source holds {source.Length} elements; the array has {ElementCount}. Fix: pass exactly as many elements as the array holds (in C order).");
        fixed (T* src = source)
            StridedCopy.Scatter((byte*)src, Shape, Strides, sizeof(T), Format.SwapUnit, (byte*)Pointer, booleans: DType == DType.Bool);
    }

    /// <summary>Releases the buffer (taking the GIL). Harmless when called again.</summary>
    public void Dispose()
    {
        var view = Interlocked.Exchange(ref _view, 0);
        if (view == 0)
            return;
        GC.SuppressFinalize(this);
        if (!PythonRuntime.IsRunning)
            return;
        using var gil = Gil.Acquire();
        ReleaseNow(view);
    }

    /// <summary>
    /// Releases the buffer from any thread without ever waiting for the GIL: at once when this thread holds it,
    /// otherwise through the finalizer queue, drained by a thread-pool item that takes the GIL (or by the next
    /// GIL holder, whichever comes first). For release callbacks that run on foreign threads (libtorch deleters).
    /// </summary>
    internal void ReleaseWithoutWaiting()
    {
        var view = Interlocked.Exchange(ref _view, 0);
        if (view == 0)
            return;
#pragma warning disable CA1816 // a second way to dispose: the finalizer has nothing left to do
        GC.SuppressFinalize(this);
#pragma warning restore CA1816
        if (!PythonRuntime.IsRunning)
            return;
        if (Gil.IsHeld)
        {
            ReleaseNow(view);
            return;
        }
        s_pendingReleases.Enqueue(view);
        PendingReleases.NoteQueued();
        ThreadPool.UnsafeQueueUserWorkItem(static _ =>
        {
            if (PythonRuntime.IsRunning && HasPendingReleases)
            {
                using var gil = Gil.Acquire(); // drains the queue
            }
        }, null);
    }

    ~PythonBuffer()
    {
        var view = Interlocked.Exchange(ref _view, 0);
        if (view != 0)
        {
            s_pendingReleases.Enqueue(view); // released by the next GIL holder; never wait for the GIL here
            PendingReleases.NoteQueued();
        }
    }

    /// <summary>True when finalizers queued buffers that still await release.</summary>
    internal static bool HasPendingReleases => !s_pendingReleases.IsEmpty;

    /// <summary>Releases buffers queued by finalizers. Requires the GIL.</summary>
    internal static void DrainPendingReleases()
    {
        while (s_pendingReleases.TryDequeue(out var view))
            ReleaseNow(view);
    }

    private static void ReleaseNow(nint view)
    {
        // Safety: view came from Acquire, and Interlocked.Exchange made this the only release; the GIL is held.
        CPython.PyBuffer_Release((PyBuffer*)view);
        System.Runtime.InteropServices.NativeMemory.Free((void*)view);
        LiveObjects.BufferReleased();
    }
}
