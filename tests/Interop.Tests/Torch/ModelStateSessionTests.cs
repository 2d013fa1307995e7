using Interop.DTypes;
using Interop.Sessions;

namespace Interop.Tests.Torch;

/// <summary>
/// The Python side of model-weight transfer (interop_helpers.model_state) driven through an in-process session, as
/// Interop.TorchSharp's ModelWeights drives it: TorchSharp cannot share this process with Python torch, so these tests
/// check what the in-process path exchanges (handles, describe rows, raw-byte tensors, write-back from byte arguments).
/// </summary>
[TestFixture]
[Category("numpy")]
[Category("torch")]
public class ModelStateSessionTests
{
    private const string Fixture = """
        import torch

        def model():
            torch.manual_seed(0)
            m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
            m[0].weight.data = m[0].weight.data.to(torch.bfloat16)
            with torch.no_grad():
                m[1].num_batches_tracked.fill_(5)
            return m

        def bits(t):
            return t.detach().view(torch.int16).clone() if t.dtype == torch.bfloat16 else t.detach().clone()
        """;

    private string _directory = null!;
    private PythonSession _session = null!;
    private PythonRef _fixture = null!;
    private PythonRef _helpers = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _directory = Directory.CreateTempSubdirectory("interop-model-state-").FullName;
        var path = Path.Combine(_directory, "model_state_fixture.py");
        File.WriteAllText(path, Fixture);
        _session = PythonSession.InProcess();
        _fixture = _session.LoadFile(path);
        _helpers = _session.Import("interop_helpers.model_state");
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _helpers?.Dispose();
        _fixture?.Dispose();
        _session?.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private PythonValue Call(PythonRef module, string name, params object?[] args)
    {
        using var fn = module.GetAttr(name);
        return fn.Call(args);
    }

    [Test]
    public void A_module_is_described_read_as_raw_bytes_and_written_back_bit_exact_bfloat16_included()
    {
        using var built = Call(_fixture, "model");
        using var model = built.AsRef();
        using var opened = Call(_helpers, "open_source", model);
        using var source = opened.AsRef();
        using var rows = Call(_helpers, "describe", source);
        var names = rows.Items.Select(r => r[0].AsString()).ToArray();
        Assert.That(names, Is.EqualTo(new[] { "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked" }));
        Assert.That(rows[0][1].AsString(), Is.EqualTo("bfloat16"));
        Assert.That(rows[0][3].AsInt64(), Is.EqualTo(12), "6 bfloat16 elements");
        Assert.That(rows[6][2].Items, Is.Empty, "num_batches_tracked is 0-d");

        using var batch = Call(_helpers, "read_batch", source, new List<object?> { 0L, 6L });
        var weightBytes = batch[0].ToArray<byte>();
        Assert.That(batch[0].DType, Is.EqualTo(DType.UInt8));
        using (var weight = model.GetAttr("0").GetAttr("weight"))
        using (var bits = Call(_fixture, "bits", weight))
        {
            var expected = new byte[12];
            Buffer.BlockCopy(bits.ToArray<short>(), 0, expected, 0, 12);
            Assert.That(weightBytes, Is.EqualTo(expected), "the bfloat16 weight's own bits");
        }
        Assert.That(BitConverter.ToInt64(batch[1].ToArray<byte>()), Is.EqualTo(5));

        // write back: new bfloat16 bit patterns and a new counter, as byte arguments
        var newBits = new short[] { 0x0001, 0x7FC1, unchecked((short)0x8000), 0x3F80, -1, 0x4000 };
        var newWeight = new byte[12];
        Buffer.BlockCopy(newBits, 0, newWeight, 0, 12);
        var counter = BitConverter.GetBytes(42L);
        using var target = Call(_helpers, "open_target", model);
        using var targetRef = target.AsRef();
        using (Call(_helpers, "write_batch", targetRef,
                    new List<object?> { "0.weight", "1.num_batches_tracked" },
                    new List<object?> { "bfloat16", "int64" },
                    new List<object?> { new List<object?> { 2L, 3L }, new List<object?>() },
                    new List<object?> { TensorArgument.Create<byte>(newWeight, 12), TensorArgument.Create<byte>(counter, 8) },
                    false)) { }
        using (var weight = model.GetAttr("0").GetAttr("weight"))
        using (var bits = Call(_fixture, "bits", weight))
            Assert.That(bits.ToArray<short>(), Is.EqualTo(newBits), "bit-exact, NaN payload and -0 included");
        using (var counterRef = model.GetAttr("1").GetAttr("num_batches_tracked"))
        using (var tracked = Call(_fixture, "bits", counterRef))
            Assert.That(tracked.ToArray<long>(), Is.EqualTo(new[] { 42L }));
    }

    [Test]
    public void A_mismatched_write_is_refused_in_Python_before_it_copies()
    {
        using var built = Call(_fixture, "model");
        using var model = built.AsRef();
        using var target = Call(_helpers, "open_target", model);
        using var targetRef = target.AsRef();
        var e = Assert.Throws<Interop.Errors.PythonErrorException>(() => Call(_helpers, "write_batch", targetRef,
            new List<object?> { "0.bias" }, new List<object?> { "float64" }, new List<object?> { new List<object?> { 2L } },
            new List<object?> { TensorArgument.Create<byte>(new byte[16], 16) }, false).Dispose())!;
        Assert.That(e.Message, Does.Contain("entry '0.bias'"));
    }
}
