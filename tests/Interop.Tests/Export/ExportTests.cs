using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Embedding;
using Interop.NumPy;
using Python.Runtime;

namespace Interop.Tests.Export;

[TestFixture]
[Category("numpy")]
public class ExportTests
{
    private static T Py<T>(string expression, params (string Name, NDArray Value)[] names) => PythonRuntime.Run(() =>
    {
        using var scope = Python.Runtime.Py.CreateScope();
        scope.Exec("import numpy as np, gc, sys");
        foreach (var (name, value) in names)
            scope.Set(name, value.PyObject);
        using var result = scope.Eval(expression);
        return result.As<T>();
    });

    private static void Exec(string code) => PythonRuntime.Run(() => { PythonEngine.Exec(code); return 0; });

    [Test]
    public void CopyFrom_span_makes_a_new_array_of_the_right_dtype_shape_and_values()
    {
        float[] data = [1, 2, 3, 4, 5, 6.5f];
        using var a = NDArray.CopyFrom<float>(data, 2, 3);
        Assert.Multiple(() =>
        {
            Assert.That(a.DTypeName, Is.EqualTo("float32"));
            Assert.That(a.Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(Py<string>("str(a.tolist())", ("a", a)), Is.EqualTo("[[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]"));
            Assert.That(Py<bool>("a.flags.owndata and a.flags.c_contiguous", ("a", a)));
        });
        data[0] = 100;
        Assert.That(Py<double>("float(a[0, 0])", ("a", a)), Is.EqualTo(1), "a copy must not follow later writes");
    }

    private static IEnumerable<DType> NumPyDTypes() => DType.All.Where(d => d.NumPyName is not null);

    [TestCaseSource(nameof(NumPyDTypes))]
    public void Every_dtype_round_trips_dotnet_numpy_dotnet_bit_exactly(DType dtype)
    {
        var method = typeof(ExportTests).GetMethod(nameof(RoundTrip), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        method.MakeGenericMethod(dtype.ClrType!).Invoke(null, [dtype]);
    }

    private static void RoundTrip<T>(DType dtype) where T : unmanaged
    {
        var bytes = new byte[24 * dtype.ItemSize];
        new Random(dtype.ItemSize * 31 + dtype.Name.Length).NextBytes(bytes);
        if (dtype == DType.Bool)
            for (var i = 0; i < bytes.Length; i++) bytes[i] &= 1;
        var data = MemoryMarshal.Cast<byte, T>(bytes).ToArray();
        using var a = NDArray.CopyFrom<T>(data, 2, 3, 4);
        Assert.That(a.DTypeName, Is.EqualTo(dtype.NumPyName));
        var expectedHex = Convert.ToHexString(bytes).ToLowerInvariant();
        Assert.That(Py<string>("a.tobytes().hex()", ("a", a)), Is.EqualTo(expectedHex), "NumPy sees the same bytes");
        var back = a.ToArray<T>();
        Assert.That(MemoryMarshal.AsBytes(back.AsSpan()).ToArray(), Is.EqualTo(bytes));
    }

    [Test]
    public void Multidimensional_arrays_copy_both_ways_with_their_shape()
    {
        var grid = new double[3, 4];
        for (var i = 0; i < 3; i++)
            for (var j = 0; j < 4; j++)
                grid[i, j] = i * 10 + j;
        using var a = NDArray.CopyFrom(grid);
        Assert.That(a.Shape, Is.EqualTo(new long[] { 3, 4 }));
        Assert.That(Py<double>("float(a[2, 3])", ("a", a)), Is.EqualTo(23));
        using var t = NDArray.Evaluate("np.arange(24, dtype=np.int16).reshape(2, 3, 4).transpose(2, 0, 1)");
        var cube = (short[,,])t.ToMultidimensionalArray<short>();
        Assert.Multiple(() =>
        {
            Assert.That(cube.GetLength(0), Is.EqualTo(4));
            Assert.That(cube.GetLength(1), Is.EqualTo(2));
            Assert.That(cube[3, 1, 2], Is.EqualTo(Py<short>("int(t[3, 1, 2])", ("t", t))));
        });
    }

    [Test]
    public void CopyFrom_a_strided_tensor_span_gathers_it_in_logical_order()
    {
        var storage = Enumerable.Range(0, 6).Select(i => (float)i).ToArray();
        // A transposed 3x2 view of a 2x3 row-major block.
        var transposed = new ReadOnlyTensorSpan<float>(storage, [3, 2], [1, 3]);
        using var a = NDArray.CopyFrom(transposed);
        Assert.That(Py<string>("str(a.tolist())", ("a", a)), Is.EqualTo("[[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]"));
    }

    [Test]
    public void Assign_scatters_into_a_strided_view_and_leaves_the_gaps_alone()
    {
        using var whole = NDArray.Evaluate("np.zeros((4, 6), dtype=np.int32)");
        using var every_other = PythonRuntime.Run(() =>
        {
            using var scope = Python.Runtime.Py.CreateScope();
            scope.Set("w", whole.PyObject);
            return NDArray.Wrap(scope.Eval("w[::2, ::-2].T"));
        });
        var data = Enumerable.Range(1, 6).ToArray();
        every_other.Assign<int>(data);
        Assert.Multiple(() =>
        {
            Assert.That(Py<string>("str(e.tolist())", ("e", every_other)), Is.EqualTo("[[1, 2], [3, 4], [5, 6]]"));
            Assert.That(Py<int>("int((w != 0).sum())", ("w", whole)), Is.EqualTo(6), "only the viewed elements change");
            Assert.That(Py<int>("int(w[2, 1])", ("w", whole)), Is.EqualTo(6));
        });
    }

    [TestCase("'>f4'", "float32")]
    [TestCase("'>c8'", "complex64")]
    [TestCase("'>u2'", "uint16")]
    public void Assign_into_a_big_endian_array_writes_its_byte_order(string typestr, string name)
    {
        using var a = NDArray.Evaluate($"np.zeros(3, dtype={typestr})");
        Assert.That(a.IsBigEndian);
        var dtype = DType.FromName(name)!;
        typeof(ExportTests).GetMethod(nameof(AssignCounting), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(dtype.ClrType!).Invoke(null, [a]);
        // NumPy reads the values back in the array's own (big-endian) order.
        Assert.That(Py<string>("str([complex(x) for x in a.tolist()])", ("a", a)), Is.EqualTo("[(1+0j), (2+0j), (3+0j)]"));
    }

    private static void AssignCounting<T>(NDArray a) where T : unmanaged
    {
        var values = new T[3];
        using var source = NDArray.Evaluate($"np.array([1, 2, 3], dtype='{DType.Of<T>().NumPyName}')");
        source.CopyTo<T>(values);
        a.Assign<T>(values);
    }

    [Test]
    public void Assign_refuses_read_only_arrays_wrong_lengths_and_wrong_types()
    {
        var buffersBefore = LiveObjects.PythonBuffers;
        using var readOnly = NDArray.Evaluate("np.frombuffer(b'abcdefgh', dtype=np.uint8)");
        Assert.Throws<Interop.Errors.ReadOnlyBufferException>(() => readOnly.Assign<byte>(new byte[8]));
        using var a = NDArray.Evaluate("np.zeros((2, 3), dtype=np.float64)");
        var ex = Assert.Throws<ArgumentException>(() => a.Assign<double>(new double[5]));
        Assert.That(ex!.Message, Does.Contain("5 elements").And.Contain("6"));
        Assert.Throws<Interop.Errors.ElementTypeMismatchException>(() => a.Assign<float>(new float[6]));
        Assert.That(Py<double>("float(abs(a).sum())", ("a", a)), Is.EqualTo(0), "refused writes leave the array untouched");
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(buffersBefore), "refusals release the buffer");
    }

    [Test]
    public void ArrayView_CopyFrom_writes_through_a_writable_view_only()
    {
        using var a = NDArray.Evaluate("np.zeros(4, dtype=np.float32)");
        using (var view = a.View<float>())
            view.CopyFrom([1f, 2f, 3f, 4f]);
        Assert.That(Py<string>("str(a.tolist())", ("a", a)), Is.EqualTo("[1.0, 2.0, 3.0, 4.0]"));
        using var readOnly = a.ViewReadOnly<float>();
        Assert.Throws<Interop.Errors.ReadOnlyBufferException>(() => readOnly.CopyFrom([0f, 0f, 0f, 0f]));
    }

    [Test]
    public void ToPooledArray_copies_exactly_the_elements_and_returns_the_array_on_dispose()
    {
        using var a = NDArray.Evaluate("np.arange(10, dtype=np.int64).reshape(2, 5)[:, ::2]");
        var pool = System.Buffers.ArrayPool<long>.Create(maxArrayLength: 64, maxArraysPerBucket: 1);
        var pooled = a.ToPooledArray<long>(pool);
        Assert.That(pooled.Span.ToArray(), Is.EqualTo(a.ToArray<long>()));
        Assert.That(pooled.Length, Is.EqualTo(6));
        var rented = System.Runtime.InteropServices.MemoryMarshal.TryGetArray<long>(pooled.Memory, out var segment) ? segment.Array : null;
        pooled.Dispose();
        pooled.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _ = pooled.Span.Length);
        Assert.That(pool.Rent(6), Is.SameAs(rented), "the array went back to the pool it came from");
    }

    [Test]
    public void A_shape_that_does_not_fit_the_data_is_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => NDArray.CopyFrom<int>(new int[6], 4, 2));
        Assert.That(ex!.Message, Does.Contain("8 elements").And.Contain("6"));
        Assert.Throws<ArgumentOutOfRangeException>(() => NDArray.CopyFrom<int>(new int[6], -2, -3));
        Assert.Throws<ArgumentException>(() => NDArray.Share(new int[6], 4, 2));
    }

    [Test]
    public void Unsupported_element_types_are_refused_with_the_supported_list()
    {
        var ex = Assert.Throws<NotSupportedException>(() => NDArray.CopyFrom(new decimal[2]));
        Assert.That(ex!.Message, Does.Contain("Decimal").And.Contain("Single"));
    }

    [Test]
    public void Share_exposes_the_same_memory_writable_both_ways()
    {
        var data = new Complex[] { new(1, 2), new(3, 4), new(5, 6), new(7, 8) };
        using var a = NDArray.Share(data, 2, 2);
        Assert.That(a.DTypeName, Is.EqualTo("complex128"));
        // The array is pinned while shared, so its element address is stable.
        Assert.That(a.Address, Is.EqualTo(Marshal.UnsafeAddrOfPinnedArrayElement(data, 0)), "no copy: NumPy's data pointer is the .NET array's");
        PythonRuntime.Run(() => { a.PyObject[new PyTuple([new PyInt(1), new PyInt(1)])] = PythonEngine.Eval("complex(-1, -2)"); return 0; });
        Assert.That(data[3], Is.EqualTo(new Complex(-1, -2)), "a write in NumPy is seen by .NET");
        data[0] = new Complex(9, 9);
        Assert.That(Py<string>("str(a[0, 0])", ("a", a)), Is.EqualTo("(9+9j)"), "a write in .NET is seen by NumPy");
    }

    [Test]
    public void Shared_memory_stays_pinned_until_Python_drops_the_last_user_then_is_released()
    {
        var before = LiveObjects.ExportedToPython;
        var data = new int[] { 1, 2, 3 };
        var a = NDArray.Share(data);
        Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(before + 1));
        // Python keeps a view of it in a module-level variable; disposing our handle must not release it.
        PythonRuntime.Run(() =>
        {
            using var main = Python.Runtime.Py.Import("__main__");
            using var slicer = PythonEngine.Eval("lambda a: a[1:]");
            using var slice = slicer.Invoke(a.PyObject);
            main.SetAttr("interop_kept_view", slice);
            return 0;
        });
        a.Dispose();
        Exec("import gc; gc.collect()");
        Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(before + 1), "a view in Python still uses the memory");
        data[2] = 33;
        Assert.That(PythonRuntime.Run(() => PythonEngine.Eval("int(__import__('__main__').interop_kept_view[1])").As<int>()), Is.EqualTo(33));
        Exec("import __main__, gc\ndel __main__.interop_kept_view\ngc.collect()");
        Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(before), "released once Python dropped the last user");
    }

    [Test]
    public void Native_memory_is_shared_and_its_owner_disposed_when_NumPy_is_done()
    {
        var owner = new NativeOwner(4 * sizeof(double));
        Marshal.Copy(new[] { 0.5, 1.5, 2.5, 3.5 }, 0, owner.Address, 4);
        var a = NDArray.Share(owner.Address, DType.Float64, [2, 2], [8, 16], owner, readOnly: true);
        Assert.Multiple(() =>
        {
            Assert.That(Py<string>("str(a.tolist())", ("a", a)), Is.EqualTo("[[0.5, 2.5], [1.5, 3.5]]"), "byte strides are honoured (Fortran order)");
            Assert.That(a.IsWriteable, Is.False);
            Assert.That(owner.Disposed, Is.False);
        });
        a.Dispose();
        Exec("import gc; gc.collect()");
        Assert.That(owner.Disposed, Is.True);
    }

    [Test]
    [Category("leak")]
    public void A_hundred_thousand_round_trips_leak_no_buffers_pins_references_or_memory()
    {
        using var fixedArray = NDArray.Evaluate("np.arange(64, dtype=np.float32)");
        var refcount = Py<long>("sys.getrefcount(a)", ("a", fixedArray));
        float[] data = Enumerable.Range(0, 64).Select(i => (float)i).ToArray();
        var destination = new float[64];
        var buffers = LiveObjects.PythonBuffers;
        var exports = LiveObjects.ExportedToPython;
        void Cycle(int n)
        {
            for (var i = 0; i < n; i++)
            {
                using (var view = fixedArray.ViewReadOnly<float>())
                    view.CopyTo(destination);
                using var copy = NDArray.CopyFrom<float>(data);
                using var shared = NDArray.Share(data);
                _ = shared.ToArray<float>();
            }
        }
        Cycle(5_000); // warm up: caches, JIT, allocator pools
        Exec("import gc; gc.collect()");
        var rss = Environment.WorkingSet;
        Cycle(100_000);
        Exec("import gc; gc.collect()");
        var growth = Environment.WorkingSet - rss;
        Assert.Multiple(() =>
        {
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(buffers));
            Assert.That(LiveObjects.ExportedToPython, Is.EqualTo(exports));
            Assert.That(Py<long>("sys.getrefcount(a)", ("a", fixedArray)), Is.EqualTo(refcount));
            Assert.That(destination, Is.EqualTo(data));
            Assert.That(growth, Is.LessThan(32L << 20), $"resident memory grew by {growth >> 20} MiB over 100,000 round trips (tolerance 32 MiB)");
        });
    }

    private sealed class NativeOwner(int bytes) : IDisposable
    {
        public nint Address { get; } = Marshal.AllocHGlobal(bytes);

        public bool Disposed { get; private set; }

        public void Dispose()
        {
            Marshal.FreeHGlobal(Address);
            Disposed = true;
        }
    }
}
