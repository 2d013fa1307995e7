using Interop.DTypes;
using Interop.Sessions;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Interop.TorchSharp.Tests.Models;

/// <summary>Shared pieces of the model tests: the Python fixture, arguments, TorchSharp twins of the Python models.</summary>
internal static class ModelSupport
{
    public static string FixturePath
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "tests", "Interop.TorchSharp.Tests", "Models", "model_fixture.py");
                if (File.Exists(candidate))
                    return candidate;
            }
            throw new FileNotFoundException("model_fixture.py");
        }
    }

    /// <summary>A float32 TorchSharp tensor as a call argument (a copy of its elements, its shape).</summary>
    public static TensorArgument Argument(Tensor x)
    {
        using var flat = x.contiguous().reshape(-1);
        return TensorArgument.Create<float>(flat.data<float>().ToArray(), x.shape);
    }

    /// <summary>Same dtype, shape and bytes.</summary>
    public static bool SameBits(Tensor a, Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape))
            return false;
        return Bytes(a).AsSpan().SequenceEqual(Bytes(b));
    }

    /// <summary>A copy of the tensor's bytes in C order.</summary>
    public static byte[] Bytes(Tensor t)
    {
        using var c = t.detach().contiguous();
        var count = c.numel() * c.ElementSize;
        if (count == 0)
            return [];
        using var view = TorchSharpTensors.WrapMemory(c.DataAddress(), DType.UInt8, [count], [], owner: null);
        return view.data<byte>().ToArray();
    }

    /// <summary>A contiguous tensor's memory seen as another dtype of the same item size (TorchSharp has no Tensor.view(dtype)); valid while <paramref name="t"/> lives.</summary>
    public static Tensor Reinterpret(Tensor t, DType dtype) =>
        TorchSharpTensors.WrapMemory(t.DataAddress(), dtype, t.shape, [], owner: null);
}

/// <summary>TorchSharp twin of model_fixture.Encoder.</summary>
internal sealed class EncoderNet : nn.Module<Tensor, Tensor>
{
    private readonly TransformerEncoderLayer layer;
    private readonly Linear head;

    public EncoderNet() : base(nameof(EncoderNet))
    {
        layer = nn.TransformerEncoderLayer(32, 4, 64, 0.0);
        head = nn.Linear(32, 3);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var hidden = layer.call(input);
        return head.call(hidden);
    }
}

/// <summary>TorchSharp twin of model_fixture.Recurrent.</summary>
internal sealed class RecurrentNet : nn.Module<Tensor, Tensor>
{
    private readonly LSTM lstm;
    private readonly Linear head;

    public RecurrentNet() : base(nameof(RecurrentNet))
    {
        lstm = nn.LSTM(10, 20, numLayers: 2);
        head = nn.Linear(20, 4);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        var (output, h, c) = lstm.call(input);
        using (h)
        using (c)
        using (output)
            return head.call(output[-1]);
    }
}

/// <summary>Differs from Recurrent: one LSTM layer, a head of another shape, an extra layer.</summary>
internal sealed class OtherNet : nn.Module
{
#pragma warning disable IDE0052 // registered as components
    private readonly LSTM lstm;
    private readonly Linear head;
    private readonly Linear extra;
#pragma warning restore IDE0052

    public OtherNet() : base(nameof(OtherNet))
    {
        lstm = nn.LSTM(10, 20);
        head = nn.Linear(20, 5);
        extra = nn.Linear(3, 3);
        RegisterComponents();
    }
}

/// <summary>Only Recurrent's first LSTM layer.</summary>
internal sealed class SingleLayerNet : nn.Module
{
#pragma warning disable IDE0052 // registered as a component
    private readonly LSTM lstm;
#pragma warning restore IDE0052

    public SingleLayerNet() : base(nameof(SingleLayerNet))
    {
        lstm = nn.LSTM(10, 20);
        RegisterComponents();
    }
}
