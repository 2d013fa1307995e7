// The op-parity suite's definitions: each op once for PyTorch (a Python expression) and once for TorchSharp.
using Interop.DTypes;
using TorchSharp;
using F = TorchSharp.torch.nn.functional;
using P = Interop.Testing.ParityInput;

namespace Interop.Testing.Tests;

internal static class ParityOps
{
    public static readonly OpParity[] All =
    [
        new("matmul", "lambda a, b: torch.matmul(a, b)", t => t[0].matmul(t[1]), P.Normal(4, 6), P.Normal(6, 5)),
        new("bmm", "lambda a, b: torch.bmm(a, b)", t => t[0].bmm(t[1]), P.Normal(3, 4, 6), P.Normal(3, 6, 5)),
        new("linear", "lambda x, w, b: F.linear(x, w, b)", t => F.linear(t[0], t[1], t[2]), P.Normal(4, 6), P.Normal(5, 6), P.Normal(5)),
        new("conv2d", "lambda x, w, b: F.conv2d(x, w, b, padding=1)", t => F.conv2d(t[0], t[1], t[2], padding: [1, 1]), P.Normal(2, 3, 8, 8), P.Normal(4, 3, 3, 3), P.Normal(4)),
        new("conv_transpose2d", "lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2)", t => F.conv_transpose2d(t[0], t[1], t[2], strides: [2, 2]), P.Normal(2, 4, 5, 5), P.Normal(4, 3, 3, 3), P.Normal(3)),
        new("max_pool2d", "lambda x: F.max_pool2d(x, 2)", t => F.max_pool2d(t[0], [2, 2]), P.Normal(2, 3, 8, 8)),
        new("avg_pool2d", "lambda x: F.avg_pool2d(x, 2)", t => F.avg_pool2d(t[0], [2, 2]), P.Normal(2, 3, 8, 8)),
        new("batch_norm", "lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False)",
            t => F.batch_norm(t[0], t[1], t[2], t[3], t[4], training: false), P.Normal(4, 3, 5), P.Normal(3), P.Positive(3), P.Normal(3), P.Normal(3)),
        new("layer_norm", "lambda x, w, b: F.layer_norm(x, [6], w, b)", t => F.layer_norm(t[0], [6], t[1], t[2]), P.Normal(4, 6), P.Normal(6), P.Normal(6)),
        new("group_norm", "lambda x, w, b: F.group_norm(x, 2, w, b)", t => F.group_norm(t[0], 2, t[1], t[2]), P.Normal(2, 4, 5), P.Normal(4), P.Normal(4)),
        new("embedding", "lambda w, i: F.embedding(i, w)", t => Embedding(t[0], t[1]), P.Normal(10, 5), P.Index(10, 3, 4)),
        new("softmax", "lambda x: torch.softmax(x, -1)", t => torch.softmax(t[0], -1), P.Normal(4, 7)),
        new("log_softmax", "lambda x: torch.log_softmax(x, -1)", t => F.log_softmax(t[0], -1), P.Normal(4, 7)),
        new("gelu", "lambda x: F.gelu(x)", t => F.gelu(t[0]), P.Normal(5, 6)),
        new("silu", "lambda x: F.silu(x)", t => F.silu(t[0]), P.Normal(5, 6)),
        new("relu", "lambda x: F.relu(x)", t => F.relu(t[0]), P.Normal(5, 6)),
        new("tanh", "lambda x: torch.tanh(x)", t => torch.tanh(t[0]), P.Normal(5, 6)),
        new("sigmoid", "lambda x: torch.sigmoid(x)", t => torch.sigmoid(t[0]), P.Normal(5, 6)),
        new("exp", "lambda x: torch.exp(x)", t => torch.exp(t[0]), P.Normal(5, 6)),
        new("log", "lambda x: torch.log(x)", t => torch.log(t[0]), P.Positive(5, 6)),
        new("sqrt", "lambda x: torch.sqrt(x)", t => torch.sqrt(t[0]), P.Positive(5, 6)),
        new("sum", "lambda x: torch.sum(x, 1)", t => t[0].sum(1), P.Normal(5, 6)),
        new("mean", "lambda x: torch.mean(x, 1)", t => t[0].mean([1L]), P.Normal(5, 6)),
        new("var", "lambda x: torch.var(x, 1)", t => t[0].var(1), P.Normal(5, 6)),
        new("cumsum", "lambda x: torch.cumsum(x, 1)", t => t[0].cumsum(1), P.Normal(5, 6)),
        new("topk", "lambda x: torch.topk(x, 3).values", t => t[0].topk(3).values, P.Normal(5, 6)),
        new("sort", "lambda x: torch.sort(x, -1).values", t => t[0].sort(-1).Values, P.Normal(5, 6)),
        new("argmax", "lambda x: torch.argmax(x, 1)", t => t[0].argmax(1), P.Normal(5, 6)),
        new("gather", "lambda x, i: torch.gather(x, 1, i)", t => t[0].gather(1, t[1]), P.Normal(4, 5), P.Index(5, 4, 3)),
        new("scatter_add", "lambda x, i, s: torch.scatter_add(x, 1, i, s)", t => t[0].scatter_add(1, t[1], t[2]), P.Normal(4, 5), P.Index(5, 4, 3), P.Normal(4, 3)),
        new("index_select", "lambda x, i: torch.index_select(x, 0, i)", t => t[0].index_select(0, t[1]), P.Normal(6, 5), P.Index(6, 4)),
        new("einsum", "lambda a, b: torch.einsum('ij,jk->ik', a, b)", t => torch.einsum("ij,jk->ik", t[0], t[1]), P.Normal(4, 6), P.Normal(6, 5)),
        new("cross_entropy", "lambda x, y: F.cross_entropy(x, y)", t => F.cross_entropy(t[0], t[1]), P.Normal(6, 5), P.Index(5, 6)),
        new("mse_loss", "lambda a, b: F.mse_loss(a, b)", t => F.mse_loss(t[0], t[1]), P.Normal(5, 6), P.Normal(5, 6)),
    ];

    /// <summary>TorchSharp has no functional embedding: the module over the same weight (frozen, no copy).</summary>
    private static torch.Tensor Embedding(torch.Tensor weight, torch.Tensor indices)
    {
        using var module = torch.nn.Embedding_from_pretrained(weight, freeze: true);
        return module.forward(indices);
    }

    /// <summary>Ops also run in float16 (element-wise and reductions both CPU builds implement for half).</summary>
    public static readonly HashSet<string> Half =
        ["matmul", "linear", "relu", "gelu", "silu", "tanh", "sigmoid", "exp", "log", "sqrt", "sum", "mean", "softmax", "log_softmax", "cumsum", "topk", "sort", "argmax", "gather", "index_select", "max_pool2d"];

    public static IEnumerable<DType> DTypes(OpParity op) =>
        Half.Contains(op.Name) ? [DType.Float32, DType.Float64, DType.Float16] : [DType.Float32, DType.Float64];
}
