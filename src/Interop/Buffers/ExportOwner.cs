// Design notes: .NET memory exported to Python always has an owner that Python can see.
// The owner (pinned memory + whatever else must stay alive) is referenced by a GCHandle stored in a
// PyCapsule; the capsule is held by the array's base object (interop_helpers.exports.ExportedMemory).
// When NumPy drops the last array (and any tensor made from it), CPython destroys the capsule and calls
// CapsuleDestructor, which unpins the memory and frees the handle exactly once. The destructor is a
// static [UnmanagedCallersOnly] method, so there is no delegate to keep rooted.
using System.Buffers;
using System.Runtime.InteropServices;
using Interop.Diagnostics;
using Interop.Embedding;
using Interop.Native;
using PyObject = Python.Runtime.PyObject;

namespace Interop.Buffers;

/// <summary>Keeps exported .NET memory pinned (and its owner alive) until Python releases it.</summary>
internal sealed unsafe class ExportOwner
{
    private MemoryHandle _pin;
    private IDisposable? _owner;

    private ExportOwner(MemoryHandle pin, IDisposable? owner)
    {
        _pin = pin;
        _owner = owner;
    }

    /// <summary>Makes the capsule that owns <paramref name="pin"/> and <paramref name="owner"/>. Requires the GIL.</summary>
    public static PyObject CreateCapsule(MemoryHandle pin, IDisposable? owner)
    {
        Gil.AssertHeld();
        var handle = GCHandle.Alloc(new ExportOwner(pin, owner));
        var capsule = CPython.PyCapsule_New(GCHandle.ToIntPtr(handle), null, &CapsuleDestructor);
        if (capsule == 0)
        {
            ((ExportOwner)handle.Target!).Release();
            handle.Free();
            throw PythonErrors.FetchPending("PyCapsule_New");
        }
        LiveObjects.ExportCreated();
        // Safety: Borrow takes its own reference; the one PyCapsule_New returned is ours to drop.
        var result = CPython.Borrow(capsule);
        CPython.Py_DecRef(capsule);
        return result;
    }

    private void Release()
    {
        _pin.Dispose();
        _pin = default;
        var owner = Interlocked.Exchange(ref _owner, null);
        owner?.Dispose();
    }

    [UnmanagedCallersOnly]
    private static void CapsuleDestructor(nint capsule)
    {
        try
        {
            // Safety: called once by CPython (GIL held) when the capsule dies; the pointer is our GCHandle.
            var pointer = CPython.PyCapsule_GetPointer(capsule, null);
            if (pointer == 0)
                return;
            var handle = GCHandle.FromIntPtr(pointer);
            ((ExportOwner)handle.Target!).Release();
            handle.Free();
            LiveObjects.ExportReleased();
        }
        catch (Exception e)
        {
            // An exception must not cross into CPython; report and carry on.
            Console.Error.WriteLine($"[interop] releasing exported .NET memory failed: {e}");
        }
    }
}
