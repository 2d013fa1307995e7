using System.Runtime.InteropServices;
using Interop.DTypes;
using Interop.Errors;
using TorchSharp;

namespace Interop.TorchSharp.Tests;

/// <summary>TorchSharpTensors.WrapMemory: tensors over native memory whose owner is disposed when libtorch frees the storage.</summary>
[TestFixture]
[Category("torchsharp")]
public class WrapMemoryTests : TorchSharpFixture
{
    private sealed class NativeBlock(int bytes) : IDisposable
    {
        public nint Address { get; } = Marshal.AllocHGlobal(bytes);
        public int Disposals;
        public int DisposedOnThread;

        public void Dispose()
        {
            DisposedOnThread = Environment.CurrentManagedThreadId;
            if (Interlocked.Increment(ref Disposals) == 1)
                Marshal.FreeHGlobal(Address);
        }
    }

    [Test]
    public void The_tensor_uses_the_memory_and_disposes_the_owner_once_when_the_storage_dies()
    {
        var block = new NativeBlock(6 * sizeof(float));
        var t = TorchSharpTensors.WrapMemory(block.Address, DType.Float32, [2, 3], [], block);
        t[1, 2] = torch.tensor(9f);
        var values = new float[6];
        Marshal.Copy(block.Address, values, 0, 6);
        Assert.That(values[5], Is.EqualTo(9f));
        var row = t[1];
        t.Dispose();
        Assert.That(block.Disposals, Is.Zero, "a view still uses the storage");
        row.Dispose();
        Assert.That(block.Disposals, Is.EqualTo(1));
    }

    [Test]
    public void Strides_in_elements_give_a_strided_view_of_the_memory()
    {
        var block = new NativeBlock(12 * sizeof(long));
        Marshal.Copy(Enumerable.Range(0, 12).Select(i => (long)i).ToArray(), 0, block.Address, 12);
        using (var t = TorchSharpTensors.WrapMemory(block.Address, DType.Int64, [4, 3], [1, 4], block))
        {
            Assert.That(t.stride(), Is.EqualTo(new long[] { 1, 4 }));
            Assert.That(t.contiguous().data<long>().ToArray(), Is.EqualTo(new long[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }));
        }
        Assert.That(block.Disposals, Is.EqualTo(1));
    }

    [Test]
    public void A_refused_wrap_disposes_the_owner_at_once()
    {
        var unsigned = new NativeBlock(8);
        Assert.Throws<TorchSharpDTypeException>(() => TorchSharpTensors.WrapMemory(unsigned.Address, DType.UInt16, [4], [], unsigned));
        var negative = new NativeBlock(8);
        Assert.Throws<LayoutException>(() => TorchSharpTensors.WrapMemory(negative.Address, DType.Int16, [4], [-1], negative));
        var mismatch = new NativeBlock(8);
        Assert.Throws<ArgumentException>(() => TorchSharpTensors.WrapMemory(mismatch.Address, DType.Int16, [2, 2], [1], mismatch));
        Assert.That(new[] { unsigned.Disposals, negative.Disposals, mismatch.Disposals }, Is.EqualTo(new[] { 1, 1, 1 }));
    }

    [Test]
    public void An_undisposed_tensor_disposes_the_owner_from_the_finalizer()
    {
        Settle();
        var before = TorchSharpTensors.LiveWrappedMemory;
        var block = Make();
        Assert.That(Eventually(() => block.Disposals == 1), Is.True);
        Assert.That(Eventually(() => TorchSharpTensors.LiveWrappedMemory <= before), Is.True);

        static NativeBlock Make()
        {
            var b = new NativeBlock(64);
            _ = TorchSharpTensors.WrapMemory(b.Address, DType.UInt8, [64], [], b);
            return b;
        }
    }
}
