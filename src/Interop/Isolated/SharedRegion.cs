// Design notes: the shared-memory regions of isolated mode (see docs/isolated.md).
// - A region is a file of this process or of the worker, mapped MAP_SHARED by both. It never keeps a name:
//   the host creates its request regions as /dev/shm files and unlinks them before anyone else can see them;
//   the worker's result regions are memfds. The other side opens the file through /proc/PID/fd/N, so a crash
//   of either process (or both) leaves nothing in /dev/shm.
// - The mapping is reference-counted: Dispose drops the owner's reference, every user that touches the memory
//   on another thread holds one (Acquire: the payload copy, RegionLease for result values and TorchSharp tensors),
//   and the region is unmapped only when the last reference goes. So no thread can unmap memory another thread is
//   reading or writing (a pool retiring a dead worker while a caller still copies its argument into its region).
using System.IO.MemoryMappedFiles;
using Interop.Errors;

namespace Interop.Isolated;

/// <summary>One mapped shared-memory region (a request region of the host, or a result region of a worker).</summary>
internal sealed unsafe class SharedRegion : IDisposable
{
    private static long s_next;
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
    public static SharedRegion CreateForRequests(int id, long size)
    {
        var path = Path.Combine(Directory, NamePrefix + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture));
        FileStream file;
        try
        {
            // Preallocated: a file on tmpfs is sparse, and writing a page that a full /dev/shm cannot back raises
            // SIGBUS, which kills this process (Docker's default /dev/shm is 64 MiB). fallocate fails cleanly instead.
            file = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite, BufferSize = 0, PreallocationSize = size,
            });
        }
        catch (IOException e)
        {
            File.Delete(path);
            throw new WorkerException($"The shared-memory directory {Directory} has no room for a {size}-byte request region ({e.Message}). " +
                                      "Fix: free space there or make it larger (Docker: --shm-size), or pass smaller arrays per call.", e);
        }
        try
        {
            File.Delete(path);
            file.SetLength(size);
            return Map(id, size, file);
        }
        catch
        {
            File.Delete(path);
            file.Dispose();
            throw;
        }
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
