// Design notes: one owned Python reference, for the library's handle types (TorchTensor, NDArray) on hot paths.
// - A pythonnet PyObject costs ~0.3 µs to create and dispose (its finalizer registration, its own GIL round trip and
//   error check in Dispose). A reference that comes from the direct call path is kept here as a raw pointer instead,
//   and a pythonnet PyObject is made only when someone asks for one (the public PyObject properties): it holds a
//   reference of its own and is disposed together with this one.
// - Dispose releases with the GIL, at once (Python sees the object released when Dispose returns, as before).
//   The pointer is cleared first (Interlocked), so a use on another thread either sees a disposed object or
//   finished its use under the GIL before the release (users read Address / PyObject with the GIL held).
// - A reference nobody disposed is released by the finalizer through PendingReleases (the next GIL holder), never by
//   waiting for the GIL in the finalizer.
using Interop.Embedding;
using PyObject = Python.Runtime.PyObject;

namespace Interop.Native;

/// <summary>One owned Python reference (see the design notes).</summary>
internal sealed unsafe class OwnedReference : IDisposable
{
    private nint _address;       // the PyObject*, 0 once released
    private readonly bool _ownsAddress; // true: _address is our own reference (a raw one); false: _wrapper's
    private PyObject? _wrapper;  // a pythonnet object for the same Python object, made on demand

    private OwnedReference(nint address, PyObject? wrapper, bool ownsAddress)
    {
        _address = address;
        _wrapper = wrapper;
        _ownsAddress = ownsAddress;
        if (!ownsAddress)
            GC.SuppressFinalize(this); // the wrapper's own finalizer covers it
    }

    ~OwnedReference()
    {
        var address = Interlocked.Exchange(ref _address, 0);
        if (address != 0 && _ownsAddress)
            PendingReleases.QueueDecRef(address);
    }

    /// <summary>Takes over the new reference <paramref name="address"/> (not null).</summary>
    public static OwnedReference Take(nint address) =>
        address != 0 ? new(address, null, ownsAddress: true) : throw new ArgumentNullException(nameof(address));

    /// <summary>Takes over <paramref name="obj"/> (disposed with this reference).</summary>
    public static OwnedReference Take(PyObject obj) => new(CPython.Address(obj), obj, ownsAddress: false);

    /// <summary>True until disposed.</summary>
    public bool IsAlive => Volatile.Read(ref _address) != 0;

    /// <summary>The PyObject*; read it with the GIL held (see the design notes).</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public nint Address(Type owner)
    {
        var address = Volatile.Read(ref _address);
        ObjectDisposedException.ThrowIf(address == 0, owner);
        // A wrapper that owns the reference may have been disposed through the public PyObject: CPython.Address throws then.
        return _ownsAddress ? address : CPython.Address(Volatile.Read(ref _wrapper) ?? throw new ObjectDisposedException(owner.FullName));
    }

    /// <summary>A pythonnet object for the reference (made once, with the GIL; disposed with this reference).</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public PyObject PyObject(Type owner)
    {
        if (Volatile.Read(ref _wrapper) is { } wrapper)
            return wrapper;
        _ = Address(owner); // fail fast without the GIL
        using var gil = PythonRuntime.AcquireGil();
        var address = Address(owner); // with the GIL: a Dispose now waits until this one is stored
        if (Volatile.Read(ref _wrapper) is { } made)
            return made;
        var created = CPython.Borrow(address);
        if (Interlocked.CompareExchange(ref _wrapper, created, null) is { } other)
        {
            created.Dispose();
            return other;
        }
        return created;
    }

    /// <summary>Releases the reference (and the wrapper) with the GIL. Harmless when called again.</summary>
    public void Dispose()
    {
        var address = Interlocked.Exchange(ref _address, 0);
        if (address == 0)
            return;
        GC.SuppressFinalize(this);
        if (!PythonRuntime.IsRunning)
            return;
        using var gil = PythonRuntime.AcquireGil();
        var wrapper = Interlocked.Exchange(ref _wrapper, null);
        if (_ownsAddress)
            CPython.Py_DecRef(address); // Safety: our own reference, released once (Interlocked above), with the GIL
        wrapper?.Dispose();
    }

    /// <summary>Releases a raw reference given up by its owner (a finalizer's queued one, or a temporary). Requires the GIL.</summary>
    internal static void DecRef(nint address)
    {
        Gil.AssertHeld();
        CPython.Py_DecRef(address); // Safety: the caller gives up its only claim on this reference
    }
}
