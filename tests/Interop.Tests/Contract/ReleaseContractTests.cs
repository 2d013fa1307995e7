using System.Runtime.CompilerServices;
using Interop.Sessions;
using Interop.Tests.Isolated;

namespace Interop.Tests.Contract;

/// <summary>
/// What a session keeps alive, the same for every kind: values nobody disposed release their Python objects once .NET
/// collects them, and a disposed reference releases its object (a loaded file's module included). Python is the
/// oracle: objects are counted through a <c>weakref.WeakSet</c> after <c>gc.collect()</c>.
/// </summary>
[TestFixture(SessionKind.InProcess)]
[TestFixture(SessionKind.Isolated)]
[Category("numpy")]
[Category("contract")]
public class ReleaseContractTests
{
    private const string Helpers = """
        import gc, weakref

        alive = weakref.WeakSet()

        class Big:
            def __init__(self):
                self.data = bytearray(1_000_000)

        def make_big():
            big = Big()
            alive.add(big)
            return big

        def count_alive():
            gc.collect()
            return len(alive)
        """;

    // A file that LoadFile runs again and again: each run registers its module's payload in a set kept on sys.
    private const string Loaded = """
        import sys, weakref

        class Payload:
            pass

        payload = Payload()
        payload.data = bytearray(2_000_000)
        if not hasattr(sys, "_interop_test_payloads"):
            sys._interop_test_payloads = weakref.WeakSet()
        sys._interop_test_payloads.add(payload)

        def loaded_copies():
            import gc
            gc.collect()
            return len(sys._interop_test_payloads)
        """;

    private readonly SessionKind _kind;
    private string _directory = "";
    private PythonSession _session = null!;
    private PythonRef _helpers = null!;

    public ReleaseContractTests(SessionKind kind) => _kind = kind;

    [OneTimeSetUp]
    public void Open()
    {
        _directory = Directory.CreateTempSubdirectory("interop-release-").FullName;
        File.WriteAllText(Path.Combine(_directory, "release_helpers.py"), Helpers);
        File.WriteAllText(Path.Combine(_directory, "loaded_payload.py"), Loaded);
        _session = _kind == SessionKind.InProcess ? PythonSession.InProcess() : PythonSession.Isolated(IsolatedTestSupport.Options());
        _helpers = _session.LoadFile(Path.Combine(_directory, "release_helpers.py"));
    }

    [OneTimeTearDown]
    public void Close()
    {
        _helpers?.Dispose();
        _session?.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private long CountAlive()
    {
        using var f = _helpers.GetAttr("count_alive");
        using var value = f.Call();
        return value.AsInt64();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void MakeAndDrop(int count)
    {
        using var make = _helpers.GetAttr("make_big");
        for (var i = 0; i < count; i++)
            _ = make.Call(); // never disposed
    }

    private static void CollectDotNet()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    [Test]
    public void Values_nobody_disposed_release_their_Python_objects_once_collected()
    {
        var before = CountAlive();
        MakeAndDrop(200);
        CollectDotNet();
        _ = CountAlive(); // releases travel with the next use of the session (isolated: applied after that call)
        Assert.That(CountAlive(), Is.EqualTo(before), "200 collected values must not keep 200 MB alive in Python");
    }

    [Test]
    public void Disposed_values_release_their_Python_objects()
    {
        var before = CountAlive();
        using (var make = _helpers.GetAttr("make_big"))
        {
            for (var i = 0; i < 50; i++)
                make.Call().Dispose();
        }
        _ = CountAlive();
        Assert.That(CountAlive(), Is.EqualTo(before));
    }

    [Test]
    public void A_file_loaded_and_disposed_again_and_again_leaves_at_most_one_module_alive()
    {
        var path = Path.Combine(_directory, "loaded_payload.py");
        for (var i = 0; i < 20; i++)
        {
            using var module = _session.LoadFile(path);
            using var copies = module.GetAttr("loaded_copies");
            using var _ = copies.Call();
        }
        CollectDotNet();
        using var last = _session.LoadFile(path);
        using var count = last.GetAttr("loaded_copies");
        _ = count.Call().AsInt64();
        using var alive = count.Call();
        // In-process: only `last` (each disposed module left sys.modules); isolated: the worker's one cached module per path.
        Assert.That(alive.AsInt64(), Is.LessThanOrEqualTo(1));
    }
}
