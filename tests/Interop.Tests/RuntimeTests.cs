using Interop.Embedding;
using Interop.Errors;
using Python.Runtime;

namespace Interop.Tests;

[TestFixture]
[Category("embedding")]
public class RuntimeTests
{
    [Test]
    public void Concurrent_initialisation_from_many_threads_yields_one_runtime()
    {
        var results = new PythonInstallation[16];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i => results[i] = PythonRuntime.Initialize());
        Assert.Multiple(() =>
        {
            Assert.That(results.Distinct().Count(), Is.EqualTo(1));
            Assert.That(PythonRuntime.IsRunning);
            Assert.That(Gil.IsHeld, Is.False, "start-up must release the GIL");
        });
    }

    [Test]
    public void Initialising_again_with_another_interpreter_is_refused()
    {
        PythonRuntime.Initialize();
        var ex = Assert.Throws<InvalidOperationException>(() => PythonRuntime.Initialize(new PythonOptions { PythonExecutable = "/usr/bin/env" }));
        Assert.That(ex!.Message, Does.Contain("already running"));
    }

    [Test]
    public void The_GIL_is_held_inside_the_scope_only_and_scopes_nest()
    {
        using (var outer = PythonRuntime.AcquireGil())
        {
            Assert.That(Gil.IsHeld);
            using (PythonRuntime.AcquireGil())
                Assert.That(Gil.IsHeld);
            Assert.That(Gil.IsHeld, "the inner scope must not release the outer one");
            outer.Dispose();
            outer.Dispose();
            Assert.That(Gil.IsHeld, Is.False);
        }
        Assert.That(Gil.IsHeld, Is.False);
    }

    [Test]
    public void A_scope_inside_pythonnets_own_GIL_leaves_that_GIL_held()
    {
        PythonRuntime.Initialize();
        using (Py.GIL())
        {
            using (PythonRuntime.AcquireGil())
            {
                using (PythonRuntime.AcquireGil())
                    Assert.That(PythonRuntime.Run(() => PythonEngine.Eval("6 * 7").As<int>()), Is.EqualTo(42));
                Assert.That(Gil.IsHeld);
            }
            Assert.That(Gil.IsHeld, "our scope ended; pythonnet's still holds the GIL");
        }
        Assert.That(Gil.IsHeld, Is.False);
        using (PythonRuntime.AcquireGil())
            Assert.That(Gil.IsHeld, "the next scope on this thread takes it again");
    }

    [Test]
    public void Python_threads_calling_into_NET_take_scopes_and_leave_the_GIL_as_they_found_it()
    {
        // The callback runs on threads Python started (each with a Python thread state of its own, which a scope there
        // takes over). pythonnet releases the GIL around a call into .NET, so a scope there takes it, and after the
        // scopes the thread must not hold it (pythonnet takes it back when the callback returns).
        var answers = new List<int>();
        var heldAfter = new List<bool>();
        Func<int, int> callback = x =>
        {
            var value = PythonRuntime.Run(() => PythonEngine.Eval($"{x} * 2").As<int>());
            using (PythonRuntime.AcquireGil())
            using (PythonRuntime.AcquireGil())
                value += 1;
            lock (answers)
            {
                answers.Add(value);
                heldAfter.Add(Gil.IsHeld);
            }
            return value;
        };
        PythonRuntime.Run(() =>
        {
            using var scope = Py.CreateScope();
            scope.Set("cb", callback.ToPython());
            scope.Exec("import threading\nout = []\n" +
                       "ts = [threading.Thread(target=lambda i=i: out.append(cb(i))) for i in range(4)]\n" +
                       "[t.start() for t in ts]\n[t.join() for t in ts]\n");
            Assert.That(scope.Eval("sorted(out)").As<int[]>(), Is.EqualTo(new[] { 1, 3, 5, 7 }));
            return 0;
        });
        Assert.Multiple(() =>
        {
            Assert.That(answers.Order(), Is.EqualTo(new[] { 1, 3, 5, 7 }));
            Assert.That(heldAfter, Has.All.False, "the callback's thread gave the GIL back when its scopes ended");
            Assert.That(Gil.IsHeld, Is.False);
        });
    }

    [Test]
    public void A_NET_call_from_Python_inside_a_scope_leaves_the_outer_scope_counted()
    {
        // pythonnet releases the GIL around the callback, whose scope takes it and gives it back; the outer scope must still
        // count as held afterwards, so that its nested scopes stay nested ones (no PyGILState round trip).
        Func<int> callback = () =>
        {
            using (PythonRuntime.AcquireGil())
                return Gil.Depth;
        };
        PythonRuntime.Initialize();
        int before, inside, after, nested;
        using (PythonRuntime.AcquireGil())
        {
            before = Gil.Depth;
            using var scope = Py.CreateScope();
            scope.Set("cb", callback.ToPython());
            inside = scope.Eval("cb()").As<int>();
            after = Gil.Depth;
            using (PythonRuntime.AcquireGil())
                nested = Gil.Depth;
        }
        Assert.Multiple(() =>
        {
            Assert.That((before, inside, after, nested), Is.EqualTo((1, 1, 1, 2)));
            Assert.That(Gil.Depth, Is.Zero);
            Assert.That(Gil.IsHeld, Is.False);
        });
    }

    [Test]
    public void Many_threads_call_Python_at_once_and_get_their_own_answers()
    {
        const int threads = 8, calls = 2000;
        var wrong = 0;
        using (PythonRuntime.AcquireGil())
            PythonEngine.Exec("def interop_square(x):\n    return x * x\n", new PyDict());
        var square = PythonRuntime.Run(() => PythonEngine.Eval("lambda x: x * x"));
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            for (var i = 0; i < calls; i++)
            {
                var x = t * calls + i;
                using var gil = PythonRuntime.AcquireGil();
                using var arg = new PyInt(x);
                using var result = square.Invoke(arg);
                if (result.As<long>() != (long)x * x)
                    Interlocked.Increment(ref wrong);
            }
        });
        Assert.That(wrong, Is.Zero);
    }

    [Test]
    public async Task The_GIL_works_from_async_continuations_on_pool_threads()
    {
        var seen = new HashSet<int>();
        for (var i = 0; i < 50; i++)
        {
            await Task.Yield();
            await Task.Run(() =>
            {
                var value = PythonRuntime.Run(() => PythonEngine.Eval($"{i} + 1").As<int>());
                Assert.That(value, Is.EqualTo(i + 1));
                lock (seen)
                    seen.Add(Environment.CurrentManagedThreadId);
            });
        }
        Assert.That(seen, Is.Not.Empty);
    }

    [Test]
    public void Python_exceptions_become_PythonErrorException_with_type_message_and_traceback()
    {
        var ex = Assert.Throws<PythonErrorException>(() => PythonRuntime.Run(() =>
        {
            PythonEngine.Exec("def interop_inner():\n    raise ValueError('bad value 42')\n\ndef interop_outer():\n    interop_inner()\n\ninterop_outer()\n");
            return 0;
        }));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.PythonType, Is.EqualTo("ValueError"));
            Assert.That(ex.PythonMessage, Is.EqualTo("bad value 42"));
            Assert.That(ex.Message, Is.EqualTo("ValueError: bad value 42"));
            Assert.That(ex.PythonTraceback, Does.Contain("interop_outer").And.Contain("interop_inner").And.Contain("Traceback (most recent call last)"));
            Assert.That(ex.ToString(), Does.Contain("interop_inner"));
            Assert.That(Gil.IsHeld, Is.False);
        });
    }

    [Test]
    public void Exception_type_names_are_qualified_by_module()
    {
        var ex = Assert.Throws<PythonErrorException>(() => PythonRuntime.Run(() =>
        {
            PythonEngine.Exec("import json\njson.loads('{not json')\n");
            return 0;
        }));
        Assert.That(ex!.PythonType, Is.EqualTo("json.decoder.JSONDecodeError"));
    }

    [Test]
    public void The_helper_package_is_on_sys_path_and_importable()
    {
        var file = PythonRuntime.Run(() => Py.Import(PythonRuntime.HelperPackage).GetAttr("__file__").As<string>());
        Assert.Multiple(() =>
        {
            Assert.That(file, Does.EndWith(Path.Combine("interop_helpers", "__init__.py")));
            Assert.That(PythonRuntime.HelperDirectory, Is.Not.Null);
            Assert.That(file, Does.StartWith(PythonRuntime.HelperDirectory!));
        });
    }

    [Test]
    public void Missing_modules_raise_a_translated_ModuleNotFoundError()
    {
        var ex = Assert.Throws<PythonErrorException>(() => PythonRuntime.Import("interop_no_such_module"));
        Assert.That(ex!.PythonType, Is.EqualTo("ModuleNotFoundError"));
    }
}
