// Design notes: a Memory<byte> over native memory that someone else owns (e.g. a TorchSharp tensor's storage), so
// that it can travel as a TensorArgument without a copy. It owns nothing: the creator keeps the memory valid for as
// long as the Memory is used (for a call argument: until the call returns).
using System.Buffers;

namespace Interop.Buffers;

/// <summary>Bytes at a native address as <see cref="Memory{T}"/>; owns nothing (the creator keeps the memory valid while it is used).</summary>
internal sealed unsafe class NativeMemoryManager : MemoryManager<byte>
{
    private readonly nint _address;
    private readonly int _length;

    /// <exception cref="ArgumentOutOfRangeException">A negative length, or a null address with a non-zero length.</exception>
    public NativeMemoryManager(nint address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (address == 0 && length != 0)
            throw new ArgumentOutOfRangeException(nameof(address), "a null address with a non-zero length");
        _address = address;
        _length = length;
    }

    // Safety: the creator guarantees [address, address + length) is readable while the span is used.
    public override Span<byte> GetSpan() => new((void*)_address, _length);

    // Safety: native memory does not move, so no pin is needed.
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
        return new MemoryHandle((byte*)_address + elementIndex);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
