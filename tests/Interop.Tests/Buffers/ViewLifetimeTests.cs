using Interop.Diagnostics;
using Interop.Embedding;
using Interop.NumPy;

namespace Interop.Tests.Buffers;

/// <summary>Disposal, lifetime, writes through views, and many threads at once.</summary>
[TestFixture]
[Category("numpy")]
public class ViewLifetimeTests
{
    [Test]
    public void Every_accessor_throws_ObjectDisposedException_after_Dispose()
    {
        var before = LiveObjects.PythonBuffers;
        using var array = NumPyOracle.Array("np.arange(12.0).reshape(3, 4)");
        var view = array.View<double>();
        var memory = view.AsMemory();
        var readOnlyMemory = view.AsReadOnlyMemory();
        Assert.That(memory.Span[5], Is.EqualTo(5.0));
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before + 1));

        view.Dispose();
        Assert.That(view.IsAlive, Is.False);
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
        view.Dispose();
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before), "a second Dispose must release nothing");

        var destination = new double[12];
        Assert.Multiple(() =>
        {
            Assert.Throws<ObjectDisposedException>(() => _ = view.Shape.Length, "Shape");
            Assert.Throws<ObjectDisposedException>(() => _ = view.Strides.Length, "Strides");
            Assert.Throws<ObjectDisposedException>(() => _ = view.Rank, "Rank");
            Assert.Throws<ObjectDisposedException>(() => _ = view.Length, "Length");
            Assert.Throws<ObjectDisposedException>(() => _ = view.Address, "Address");
            Assert.Throws<ObjectDisposedException>(() => _ = view.IsCContiguous, "IsCContiguous");
            Assert.Throws<ObjectDisposedException>(() => view.AsReadOnlySpan(), "AsReadOnlySpan");
            Assert.Throws<ObjectDisposedException>(() => view.AsSpan(), "AsSpan");
            Assert.Throws<ObjectDisposedException>(() => _ = view.AsMemory().Span.Length, "AsMemory().Span");
            Assert.Throws<ObjectDisposedException>(() => _ = view.AsReadOnlyMemory().Span.Length, "AsReadOnlyMemory().Span");
            Assert.Throws<ObjectDisposedException>(() => _ = memory.Span.Length, "Memory taken before Dispose");
            Assert.Throws<ObjectDisposedException>(() => _ = readOnlyMemory.Span.Length, "ReadOnlyMemory taken before Dispose");
            Assert.Throws<ObjectDisposedException>(() => memory.Pin().Dispose(), "Memory.Pin");
            Assert.Throws<ObjectDisposedException>(() => view.AsReadOnlyTensorSpan(), "AsReadOnlyTensorSpan");
            Assert.Throws<ObjectDisposedException>(() => view.AsTensorSpan(), "AsTensorSpan");
            Assert.Throws<ObjectDisposedException>(() => view.CopyTo(destination), "CopyTo");
            Assert.Throws<ObjectDisposedException>(() => view.ToArray(), "ToArray");
            Assert.Throws<ObjectDisposedException>(() => view.ToTensor(), "ToTensor");
        });
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
    }

    [Test]
    public void Disposing_a_view_from_another_thread_and_twice_concurrently_releases_once()
    {
        var before = LiveObjects.PythonBuffers;
        using var array = NumPyOracle.Array("np.arange(5, dtype=np.int16)");
        var views = Enumerable.Range(0, 50).Select(_ => array.ViewReadOnly<short>()).ToArray();
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before + 50));
        Parallel.For(0, views.Length * 2, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => views[i / 2].Dispose());
        Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
    }

    [Test]
    public void Writes_through_AsSpan_of_a_row_slice_are_seen_by_numpy()
    {
        NumPyOracle.Exec("w_span = np.zeros((4, 6))");
        using var array = NumPyOracle.Array("w_span[1:3]");
        using (var view = array.View<double>())
        {
            var span = view.AsSpan();
            for (var i = 0; i < span.Length; i++)
                span[i] = i + 0.5;
        }
        Assert.That(NumPyOracle.Eval<bool>("np.array_equal(w_span[1:3].ravel(), np.arange(12) + 0.5) and not w_span[0].any() and not w_span[3].any()"));
    }

    [Test]
    public void Writes_through_AsMemory_are_seen_by_numpy()
    {
        NumPyOracle.Exec("w_memory = np.zeros(8, dtype=np.int32)");
        using var array = NumPyOracle.Array("w_memory[2:6]");
        using (var view = array.View<int>())
            view.AsMemory().Span.Fill(-7);
        Assert.That(NumPyOracle.Eval<bool>("w_memory.tolist() == [0, 0, -7, -7, -7, -7, 0, 0]"));
    }

    [Test]
    public void Writes_through_AsTensorSpan_of_a_strided_slice_are_seen_by_numpy()
    {
        NumPyOracle.Exec("w_tensor = np.zeros((4, 6), dtype=np.complex64)");
        using var array = NumPyOracle.Array("w_tensor[::2, 1::2]");
        using (var view = array.View<Interop.DTypes.ComplexFloat>())
        {
            Assert.Throws<Interop.Errors.LayoutException>(() => view.AsSpan());
            var tensor = view.AsTensorSpan();
            Assert.That(tensor.Lengths.ToArray(), Is.EqualTo(new nint[] { 2, 3 }));
            for (var i = 0; i < 2; i++)
                for (var j = 0; j < 3; j++)
                    tensor[[i, j]] = new Interop.DTypes.ComplexFloat(100 * i + j, -(i + 1));
        }
        Assert.That(NumPyOracle.Eval<bool>(
            "np.array_equal(w_tensor[::2, 1::2], np.add.outer(np.arange(2) * 100, np.arange(3)) - 1j * (np.arange(2)[:, None] + 1)) " +
            "and not w_tensor[1::2].any() and not w_tensor[:, ::2].any()"));
    }

    [Test]
    public void Writes_through_AsTensorSpan_of_a_transposed_array_are_seen_by_numpy()
    {
        NumPyOracle.Exec("w_t = np.zeros((3, 5), dtype=np.uint16)");
        using var array = NumPyOracle.Array("w_t.T");
        using (var view = array.View<ushort>())
        {
            var tensor = view.AsTensorSpan();
            for (var i = 0; i < 5; i++)
                for (var j = 0; j < 3; j++)
                    tensor[[i, j]] = (ushort)(10 * i + j);
        }
        Assert.That(NumPyOracle.Eval<bool>("np.array_equal(w_t.T, np.add.outer(np.arange(5) * 10, np.arange(3)))"));
    }

    [Test]
    public void A_view_outlives_the_python_variable_and_gc_collect()
    {
        var before = LiveObjects.PythonBuffers;
        NumPyOracle.Exec("life = np.arange(1000, dtype=np.float64) * 1.5 - 7.0\nlife_ref = weakref.ref(life)");
        var array = NumPyOracle.Array("life");
        var view = array.ViewReadOnly<double>();
        array.Dispose();
        NumPyOracle.Exec("del life\ngc.collect()\njunk = [np.full(1000, -1.0) for _ in range(64)]\ngc.collect()");
        Assert.That(NumPyOracle.Eval<bool>("life_ref() is not None"), "the view's buffer must keep the array alive");
        var values = view.AsReadOnlySpan();
        var wrong = 0;
        for (var i = 0; i < values.Length; i++)
            if (values[i] != i * 1.5 - 7.0)
                wrong++;
        Assert.That(wrong, Is.Zero);
        Assert.That(view.ToArray(), Has.Length.EqualTo(1000));
        view.Dispose();
        NumPyOracle.Exec("del junk\ngc.collect()");
        Assert.Multiple(() =>
        {
            Assert.That(NumPyOracle.Eval<bool>("life_ref() is None"), "after Dispose nothing may keep the array alive");
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
        });
    }

    [Test]
    public void Eight_threads_convert_their_own_arrays_ten_thousand_times_each()
    {
        const int threads = 8, rounds = 10_000;
        var before = LiveObjects.PythonBuffers;
        var contiguous = new NDArray[threads];
        var strided = new NDArray[threads];
        for (var t = 0; t < threads; t++)
        {
            contiguous[t] = NumPyOracle.Array($"np.arange({t * 1000}, {t * 1000 + 24}, dtype=np.int64).reshape(4, 6)");
            strided[t] = NumPyOracle.Array($"np.arange({t * 1000}, {t * 1000 + 48}, dtype=np.float32).reshape(6, 8)[::2, 1::3].T");
        }
        var expectedStrided = Enumerable.Range(0, threads)
            .Select(t => NumPyOracle.Eval<float[]>($"[float(v) for v in np.arange({t * 1000}, {t * 1000 + 48}, dtype=np.float32).reshape(6, 8)[::2, 1::3].T.ravel()]"))
            .ToArray();
        var wrong = 0;
        try
        {
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                for (var r = 0; r < rounds; r++)
                {
                    using (var view = contiguous[t].ViewReadOnly<long>())
                    {
                        var span = view.AsReadOnlySpan();
                        for (var k = 0; k < span.Length; k++)
                            if (span[k] != t * 1000 + k)
                                Interlocked.Increment(ref wrong);
                    }
                    var copy = strided[t].ToArray<float>();
                    if (!copy.AsSpan().SequenceEqual(expectedStrided[t]))
                        Interlocked.Increment(ref wrong);
                }
            });
        }
        finally
        {
            foreach (var a in contiguous.Concat(strided))
                a.Dispose();
        }
        Assert.Multiple(() =>
        {
            Assert.That(wrong, Is.Zero);
            Assert.That(LiveObjects.PythonBuffers, Is.EqualTo(before));
            Assert.That(Gil.IsHeld, Is.False);
        });
    }
}
