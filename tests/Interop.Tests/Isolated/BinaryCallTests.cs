using System.Numerics.Tensors;
using System.Text;
using System.Text.Json.Nodes;
using Interop.Errors;
using Interop.Isolated;
using Interop.Sessions;
using Interop.Torch;

namespace Interop.Tests.Isolated;

/// <summary>
/// Binary calls framed straight from their arguments (BinaryCall): the frame equals, byte for byte, the one the JSON
/// request of the same call translates to (WireBinary.TryFrame), and everything outside the layout goes through the
/// JSON encoder, whose refusals stay what they were.
/// </summary>
[TestFixture]
[Category("isolated")]
public class BinaryCallTests
{
    private static readonly IsolatedSession.Target FileTarget = new("file", "/tmp/m.py", 0, ["f"], null);

    private static IEnumerable<TestCaseData> Shapes()
    {
        yield return new TestCaseData((object)Array.Empty<object?>()).SetName("no arguments");
        yield return new TestCaseData((object)new object?[] { null, true, false }).SetName("None and bools");
        yield return new TestCaseData((object)new object?[] { (sbyte)-5, (byte)200, (short)-300, (ushort)60000, -7, 4000000000u, long.MinValue, long.MaxValue, (ulong)long.MaxValue, 0UL })
            .SetName("every integer type at its edges");
        yield return new TestCaseData((object)new object?[] { 1.5, -0.0, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.Epsilon, double.MaxValue, 0.1f, float.NaN, (Half)2.5, 1e-300 })
            .SetName("floats, NaN, infinities, negative zero, float and Half");
        yield return new TestCaseData((object)new object?[] { new float[16] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } }).SetName("one float32 array");
        yield return new TestCaseData((object)new object?[] { new float[3], 2, new double[5], Array.Empty<long>(), new byte[7], new float[2, 3], null })
            .SetName("arrays of several dtypes and ranks, with scalars between them (aligned offsets)");
        yield return new TestCaseData((object)new object?[] { Tensor.Create(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3]) }).SetName("a Tensor<float>");
        yield return new TestCaseData((object)new object?[] { new int[1, 1, 1, 1, 1, 1, 1, 1] }).SetName("a rank-8 array");
    }

    private static (byte[] Json, byte[] Direct) BothFrames(object?[] args, CallOptions options, IsolatedSession.Target target, Action<WorkerProcess.RequestContext>? housekeeping = null)
    {
        var call = BinaryCall.TryCreate(target, args, options);
        Assert.That(call, Is.Not.Null, "these arguments take the binary path");
        var encoder = new ArgumentEncoder(null, options.Arrays);
        var encoded = new JsonArray();
        for (var i = 0; i < args.Length; i++)
            encoded.Add(encoder.Encode(args[i], $"argument {i}"));
        var jsonContext = new WorkerProcess.RequestContext(null);
        var directContext = new WorkerProcess.RequestContext(null);
        housekeeping?.Invoke(jsonContext);
        housekeeping?.Invoke(directContext);
        using (var region = SharedRegion.CreateForRequests(7, 1 << 20))
        {
            if (encoder.HasPayloads)
                encoder.WritePayloads(region);
            call!.WritePayloads(region);
        }
        var request = IsolatedSession.BuildRequest("call", target, encoded, null, null, options);
        var json = WorkerProcess.JsonFrame(request, 42, jsonContext);
        var direct = call!.Frame(42, directContext);
        return (json, direct);
    }

    [TestCaseSource(nameof(Shapes))]
    public void A_directly_framed_call_equals_the_translated_JSON_request_byte_for_byte(object?[] args)
    {
        var (json, direct) = BothFrames(args, CallOptions.Default, FileTarget);
        Assert.That(WireBinary.IsBinary(json.AsSpan(4)), Is.True, "the JSON request of this call translates to a binary frame");
        Assert.That(direct, Is.EqualTo(json));
    }

    [Test]
    public void Options_targets_and_housekeeping_are_framed_as_translation_frames_them()
    {
        var args = new object?[] { new float[4], 3.0, 9L };
        var optionSets = new[]
        {
            new CallOptions { GradMode = GradMode.NoGrad },
            new CallOptions { GradMode = GradMode.InferenceMode, Arrays = ArrayConversion.NumPy },
            new CallOptions { Arrays = ArrayConversion.Torch, Export = new ExportOptions { Detach = false, Upcast = true } },
            new CallOptions { KeywordArguments = new Dictionary<string, object?>() },
        };
        var targets = new[]
        {
            FileTarget,
            new IsolatedSession.Target("module", "pkg.mod", 0, ["Model", "forward", "ünïcode"], null),
            new IsolatedSession.Target("handle", null, 12345, [], null),
        };
        foreach (var options in optionSets)
        {
            foreach (var target in targets)
            {
                var (json, direct) = BothFrames(args, options, target, context =>
                {
                    context.AddNewRegion(8, 40, 1 << 20);
                    context.AddDropped(3);
                    context.AddDropped(5);
                    context.AddReleased(11);
                    context.AddHandle(77);
                });
                Assert.That(WireBinary.IsBinary(json.AsSpan(4)), Is.True);
                Assert.That(direct, Is.EqualTo(json), $"{options.GradMode} {options.Arrays} {target.Base}");
            }
        }
    }

    [Test]
    public void A_file_references_generation_travels_in_the_translated_JSON_request_as_in_the_direct_frame()
    {
        // A call the session encodes as JSON (a PythonValue or NDArray argument) is sent as the binary frame WireBinary
        // translates it to: that frame must carry the load's generation in the handle field, as BinaryCall's does.
        var loaded = new IsolatedSession.Target("file", "/tmp/m.py", 7, ["f"], null);
        var (json, direct) = BothFrames([1.5, new float[2]], CallOptions.Default, loaded);
        Assert.That(WireBinary.IsBinary(json.AsSpan(4)), Is.True);
        Assert.That(BitConverter.ToInt64(direct, 4 + 16), Is.EqualTo(7), "the direct frame carries the generation");
        Assert.That(direct, Is.EqualTo(json));
    }

    [Test]
    public void A_call_the_binary_layout_cannot_carry_falls_back_to_the_same_JSON_frame()
    {
        // Housekeeping past a 16-bit count, a name that is not UTF-8: the frame is JSON, equal to the encoder's.
        var many = (WorkerProcess.RequestContext context) =>
        {
            for (var i = 0; i < 70000; i++)
                context.AddHandle(i + 1);
        };
        var (json, direct) = BothFrames([1, new float[2]], CallOptions.Default, FileTarget, many);
        Assert.That(WireBinary.IsBinary(json.AsSpan(4)), Is.False);
        Assert.That(direct, Is.EqualTo(json));
        var (json2, direct2) = BothFrames([2.5], CallOptions.Default, new IsolatedSession.Target("file", "/tmp/\udc80.py", 0, ["f"], null));
        Assert.That(WireBinary.IsBinary(json2.AsSpan(4)), Is.False);
        Assert.That(direct2, Is.EqualTo(json2));
        var (json3, direct3) = BothFrames(new object?[] { new float[1] }, CallOptions.Default, new IsolatedSession.Target("module", "m", 0, [new string('a', 70000)], null));
        Assert.That(Encoding.UTF8.GetString(json3, 4, json3.Length - 4), Does.StartWith("{"));
        Assert.That(direct3, Is.EqualTo(json3));
    }

    private sealed class Unsupported;

    private static TensorArgument TooManyDimensions() =>
        TensorArgument.Create<float>(new float[] { 1 }, Enumerable.Repeat(1L, ConversionLimits.MaxRank + 1).ToArray());

    [Test]
    public void Arguments_outside_the_binary_layout_go_to_the_JSON_encoder()
    {
        object?[][] cases =
        [
            ["text"],
            [1, "text"],
            [ulong.MaxValue],
            [new List<int> { 1 }],
            [new Dictionary<string, object?>()],
            [(1, 2)],
            [new ReadOnlyMemory<byte>([1, 2])],
            [new Memory<byte>([1, 2])],
            [new Unsupported()],
            [new object[1, 1]],
            [new float[1], new Unsupported()],
            [new bool[1] ], // a dtype row without a NumPy name is refused by the encoder, not framed
        ];
        foreach (var args in cases)
        {
            var encoder = new ArgumentEncoder();
            bool encodes;
            try
            {
                for (var i = 0; i < args.Length; i++)
                    encoder.Encode(args[i], $"argument {i}");
                encodes = true;
            }
            catch (Exception)
            {
                encodes = false;
            }
            if (BinaryCall.TryCreate(FileTarget, args, CallOptions.Default) is not null)
                Assert.That(encodes, Is.True, $"{args[^1]?.GetType()} framed directly though the encoder refuses it");
            if (args[^1] is string or ulong or List<int> or Dictionary<string, object?> or ValueTuple<int, int> or ReadOnlyMemory<byte> or Memory<byte> or Unsupported or object[,])
                Assert.That(BinaryCall.TryCreate(FileTarget, args, CallOptions.Default), Is.Null, $"{args[^1]?.GetType()}");
        }
        var kw = new CallOptions { KeywordArguments = new Dictionary<string, object?> { ["a"] = 1 } };
        Assert.That(BinaryCall.TryCreate(FileTarget, [1], kw), Is.Null, "keyword arguments");
        Assert.That(BinaryCall.TryCreate(FileTarget, [TooManyDimensions()], CallOptions.Default),
                    Is.Null, "a rank over the limit (the encoder refuses it)");
    }

    [Test]
    public void Refusals_of_the_JSON_encoder_are_unchanged_in_a_session()
    {
        using var session = IsolatedTestSupport.Session();
        var builtins = session.Import("builtins");
        var deep = TooManyDimensions();
        var e = Assert.Throws<UnsupportedArgumentException>(() => builtins.GetAttr("len").Call(1, deep));
        Assert.That(e!.Message, Does.Contain("argument 1").And.Contain("dimensions"));
        Assert.Throws<UnsupportedArgumentException>(() => builtins.GetAttr("len").Call(new Unsupported()));
        Assert.That(builtins.GetAttr("len").Call(new float[16]).AsInt64(), Is.EqualTo(16), "the binary path still works after the refusals");
        Assert.That(builtins.GetAttr("max").Call(3, 7.5, -2L).AsDouble(), Is.EqualTo(7.5));
    }
}
