// Design notes: the shared-memory regions of isolated mode (see docs/isolated.md).
// - A region is a file of this process or of the worker, mapped MAP_SHARED by both. It never keeps a name:
//   the host creates its request regions as /dev/shm files and unlinks them right after open, *before* reserving
//   their pages (fallocate of 2 GiB takes ~0.5 s: a host killed then must not leave a name behind); the worker's
//   result regions are memfds. The other side opens the file through /proc/PID/fd/N. For the microseconds between
//   open and unlink, the first region a host creates removes names that dead hosts left (RemoveStaleNames).
// - The mapping is reference-counted: Dispose drops the owner's reference, every user that touches the memory
//   on another thread holds one (Acquire: the payload copy, RegionLease for result values and TorchSharp tensors),
//   and the region is unmapped only when the last reference goes. So no thread can unmap memory another thread is
//   reading or writing (a pool retiring a dead worker while a caller still copies its argument into its region).
using System.IO.MemoryMappedFiles;
using Interop.Errors;
using Interop.Native;

namespace Interop.Isolated;

/// <summary>One mapped shared-memory region (a request region of the host, or a result region of a worker).</summary>
internal sealed unsafe class SharedRegion : IDisposable
{
    private static long s_next;
    private static long s_nextControl;
    private static int s_swept;
    private readonly FileStream _file;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _pointer;
    private int _references = 1; // the owner's; Acquire adds one per user
    private int _ownerReleased;

    private SharedRegion(int id, long size, FileStream file, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        Id = id;
        Size = size;
        _file = file;
        _map = map;
        _view = view;
        // Safety: the pointer stays valid until Dispose releases it; the mapping covers [0, size).
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += view.PointerOffset;
    }

    /// <summary>The id the protocol uses for this region (unique per side and worker).</summary>
    public int Id { get; }

    /// <summary>Length of the mapping in bytes.</summary>
    public long Size { get; }

    /// <summary>The descriptor number of the host's file, which the worker opens through /proc/PID/fd/N.</summary>
    public int FileDescriptor => (int)_file.SafeFileHandle.DangerousGetHandle();

    /// <summary>The base address of the mapping.</summary>
    public nint Address => (nint)_pointer;

    /// <summary>Where the host's request regions are created (and immediately unlinked).</summary>
    internal static string Directory => System.IO.Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();

    /// <summary>The prefix of every name a region carries for the microseconds between creation and unlink.</summary>
    internal static string NamePrefix => $"interop-{Environment.ProcessId}-";

    /// <summary>Creates a host request region of <paramref name="size"/> bytes with no name left behind.</summary>
    /// <exception cref="WorkerException">The shared-memory directory has no room for the region.</exception>
    /// <param name="id">The region's protocol id.</param>
    /// <param name="size">Its size in bytes.</param>
    /// <param name="control">A worker's control block: named <c>interop-PID-controlN</c>, so request regions keep their own numbering.</param>
    public static SharedRegion CreateForRequests(int id, long size, bool control = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (Interlocked.Exchange(ref s_swept, 1) == 0)
            RemoveStaleNames();
        var number = control ? "control" + Interlocked.Increment(ref s_nextControl).ToString(System.Globalization.CultureInfo.InvariantCulture)
                             : Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var path = Path.Combine(Directory, NamePrefix + number);
        FileStream file;
        try
        {
            file = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite, BufferSize = 0 });
        }
        catch (IOException e)
        {
            throw new WorkerException($"Cannot create a request region in the shared-memory directory {Directory} ({e.Message}). " +
                                      "Fix: make the directory writable, or free space there.", e);
        }
        try
        {
            // The name goes first: only the descriptor is needed from here on (the worker opens /proc/PID/fd/N).
            File.Delete(path);
            // Reserved, not sparse: writing a page that a full /dev/shm cannot back raises SIGBUS, which kills this
            // process (Docker's default /dev/shm is 64 MiB). fallocate fails cleanly instead, and runs after the
            // unlink, so a host killed while it reserves a large region leaves no name.
            var error = LibC.Fallocate(file.SafeFileHandle, size);
            if (error != 0)
                throw new WorkerException($"The shared-memory directory {Directory} has no room for a {size}-byte request region " +
                                          $"({LibC.ErrorText(error)}). Fix: free space there or make it larger (Docker: --shm-size), or pass smaller arrays per call.");
            return Map(id, size, file);
        }
        catch
        {
            File.Delete(path);
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Removes <c>interop-PID-*</c> names in the shared-memory directory whose host process no longer exists (a host
    /// killed between a region's open and its unlink). Names of live processes are left alone.
    /// </summary>
    /// <returns>The number of names removed.</returns>
    internal static int RemoveStaleNames()
    {
        var removed = 0;
        string[] names;
        try
        {
            names = System.IO.Directory.GetFiles(Directory, "interop-*-*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
        foreach (var name in names)
        {
            var parts = Path.GetFileName(name).Split('-');
            if (parts.Length != 3 || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid) ||
                pid <= 0 || pid == Environment.ProcessId || System.IO.Directory.Exists($"/proc/{pid}"))
                continue;
            try
            {
                File.Delete(name);
                removed++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // another user's name, or already gone
            }
        }
        return removed;
    }

    /// <summary>Maps a result region the worker announced (its memfd, opened through /proc).</summary>
    /// <exception cref="WorkerProtocolException">The file is smaller than announced or cannot be opened.</exception>
    public static SharedRegion OpenFromWorker(int id, int workerPid, int fd, long size)
    {
        FileStream file;
        try
        {
            file = new FileStream($"/proc/{workerPid}/fd/{fd}", FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new WorkerProtocolException($"result region {id} (fd {fd} of pid {workerPid}) cannot be opened: {e.Message}");
        }
        try
        {
            if (file.Length < size)
                throw new WorkerProtocolException($"result region {id} is {file.Length} bytes, smaller than the {size} announced");
            return Map(id, size, file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static SharedRegion Map(int id, long size, FileStream file)
    {
        MemoryMappedFile? map = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(file, null, size, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: true);
            var view = map.CreateViewAccessor(0, size, MemoryMappedFileAccess.ReadWrite);
            return new SharedRegion(id, size, file, map, view);
        }
        catch
        {
            map?.Dispose();
            throw;
        }
    }

    /// <summary>The bytes [offset, offset + length) after checking they lie inside the region (spans are int-sized: at most 2 GiB - 1).</summary>
    /// <exception cref="WorkerProtocolException">The range is not inside the region.</exception>
    /// <exception cref="ObjectDisposedException">The region is unmapped.</exception>
    /// <remarks>The span is valid while the caller holds a reference (it owns the region, or called <see cref="Acquire"/>).</remarks>
    public Span<byte> Slice(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new WorkerProtocolException($"range [{offset}, {offset} + {length}) is outside region {Id} of {Size} bytes");
        var pointer = _pointer;
        ObjectDisposedException.ThrowIf(pointer is null, this);
        // Safety: the range was checked against the mapping's size above; the caller's reference keeps it mapped.
        return new Span<byte>(pointer + offset, length);
    }

    /// <summary>
    /// Another reference to the mapping: it stays mapped until this hold and every other are disposed, even when
    /// its owner disposes the region meanwhile.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The region was already unmapped.</exception>
    public Hold Acquire()
    {
        int current;
        do
        {
            current = Volatile.Read(ref _references);
            ObjectDisposedException.ThrowIf(current <= 0, this);
        }
        while (Interlocked.CompareExchange(ref _references, current + 1, current) != current);
        return new Hold(this);
    }

    /// <summary>Drops the owner's reference; the region is unmapped (and the file closed) when no hold is left.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _ownerReleased, 1) == 0)
            Release();
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _references) != 0)
            return;
        _pointer = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        _file.Dispose();
    }

    /// <summary>One reference to a region's mapping (see <see cref="Acquire"/>); release it exactly once.</summary>
    internal sealed class Hold : IDisposable
    {
        private SharedRegion? _region;

        internal Hold(SharedRegion region) => _region = region;

        /// <summary>Releases the reference.</summary>
        public void Dispose() => Interlocked.Exchange(ref _region, null)?.Release();
    }
}

/// <summary>
/// A reply's hold on a result region. Every tensor of one reply shares the lease; when the last user lets go
/// (or the finalizer runs), the region goes back to the worker's pool.
/// </summary>
internal sealed class RegionLease : IDisposable
{
    private readonly Action<RegionLease> _onReleased;
    private readonly SharedRegion.Hold _mapping; // keeps the region mapped until the last user lets go
    private int _count = 1;

    public RegionLease(SharedRegion region, Action<RegionLease> onReleased)
    {
        Region = region;
        _onReleased = onReleased;
        _mapping = region.Acquire();
    }

    ~RegionLease() => Release(final: true);

    public SharedRegion Region { get; }

    /// <summary>Adds a user; false when the lease was already released.</summary>
    public bool TryAddRef()
    {
        int current;
        do
        {
            current = Volatile.Read(ref _count);
            if (current <= 0)
                return false;
        }
        while (Interlocked.CompareExchange(ref _count, current + 1, current) != current);
        return true;
    }

    /// <summary>Drops one user; the last one returns the region.</summary>
#pragma warning disable CA1816 // a reference count: finalization is suppressed only when the last user lets go
    public void Dispose()
    {
        if (Interlocked.Decrement(ref _count) == 0)
        {
            GC.SuppressFinalize(this);
            Return();
        }
    }
#pragma warning restore CA1816

    private void Release(bool final)
    {
        if (final && Interlocked.Exchange(ref _count, 0) > 0)
            Return();
    }

    private void Return()
    {
        try
        {
            _onReleased(this);
        }
        finally
        {
            _mapping.Dispose();
        }
    }
}
