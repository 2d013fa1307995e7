// Design notes: the op-parity harness. One computation, written twice: a Python expression for PyTorch (evaluated in a
// session, usually isolated, since Python's torch and TorchSharp's libtorch rarely may share a process) and a delegate
// for TorchSharp. Inputs are generated once in .NET as TorchSharp tensors from a seed, passed to the session as they
// are (TorchSharpArguments: one copy into shared memory), and given the requested layout on both sides. Results are
// compared with TensorComparer (PyTorch's assert_close rules, PyTorch's result as expected) and reported in a table.
using System.Globalization;
using System.Text;
using Interop.DTypes;
using Interop.Sessions;
using Interop.TorchSharp;
using TorchSharp;

namespace Interop.Testing;

/// <summary>The memory layout of an op's floating inputs.</summary>
public enum ParityLayout
{
    /// <summary>C-contiguous.</summary>
    Contiguous,
    /// <summary>The last two dimensions transposed in memory (rank ≥ 2; else every other element).</summary>
    Transposed,
    /// <summary>Every other element of a buffer twice as long.</summary>
    Strided,
}

/// <summary>What one input of an op is: its shape and the kind of values.</summary>
/// <param name="Shape">The dimensions.</param>
/// <param name="Kind">Floating values (in the dtype under test), positive floats, or int64 indices below <paramref name="High"/>.</param>
/// <param name="High">For indices: the exclusive upper bound.</param>
public sealed record ParityInput(long[] Shape, ParityInputKind Kind = ParityInputKind.Normal, long High = 0)
{
    /// <summary>A floating input.</summary>
    public static ParityInput Normal(params long[] shape) => new(shape);

    /// <summary>A positive floating input (for log, sqrt, ...).</summary>
    public static ParityInput Positive(params long[] shape) => new(shape, ParityInputKind.Positive);

    /// <summary>An int64 index input in [0, high).</summary>
    public static ParityInput Index(long high, params long[] shape) => new(shape, ParityInputKind.Index, high);

    /// <inheritdoc/>
    public override string ToString() => "(" + string.Join(", ", Shape) + ")";
}

/// <summary>Kinds of inputs.</summary>
public enum ParityInputKind
{
    /// <summary>Normal values in the dtype under test.</summary>
    Normal,
    /// <summary>Positive values in the dtype under test.</summary>
    Positive,
    /// <summary>int64 indices.</summary>
    Index,
}

/// <summary>One op written for both sides.</summary>
/// <param name="Name">The op's name in reports.</param>
/// <param name="PyTorch">A Python expression giving a callable over the inputs, with <c>torch</c> and <c>F</c> in scope: <c>lambda x, w: F.linear(x, w)</c>.</param>
/// <param name="TorchSharp">The same computation with TorchSharp.</param>
/// <param name="Inputs">The inputs' shapes and kinds.</param>
public sealed record OpParity(string Name, string PyTorch, Func<torch.Tensor[], torch.Tensor> TorchSharp, params ParityInput[] Inputs)
{
    /// <summary>Explicit tolerances, when the op's defaults are PyTorch's per dtype is not what is meant; say why in <see cref="Reason"/>.</summary>
    public CloseOptions? Options { get; init; }

    /// <summary>Why <see cref="Options"/> differ from PyTorch's defaults (shown in the report).</summary>
    public string? Reason { get; init; }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>The outcome of one op × dtype × layout run.</summary>
public sealed record ParityResult(string Op, DType DType, string Shapes, ParityLayout Layout, double GreatestAbsoluteDifference,
                                  double GreatestRelativeDifference, CloseResult Verdict, string? Error = null)
{
    /// <summary>True when both sides ran and agree within tolerance.</summary>
    public bool Passed => Error is null && Verdict.Passed;

    /// <summary>One row of <see cref="ParityHarness.Table"/>.</summary>
    public string Row() => FormattableString.Invariant(
        $"| {Op} | {DType} | {Shapes} | {Layout.ToString().ToLowerInvariant()} | {Number(GreatestAbsoluteDifference)} | {Number(GreatestRelativeDifference)} | {(Error is not null ? "error: " + Error : Verdict.Passed ? "pass" : $"**FAIL** ({Verdict.MismatchCount}/{Verdict.ElementCount} beyond rtol={Number(Verdict.Rtol)}, atol={Number(Verdict.Atol)})")} |");

    private static string Number(double v) => double.IsNaN(v) ? "nan" : v == 0 ? "0" : v.ToString("0.##e+0", CultureInfo.InvariantCulture);

    /// <inheritdoc/>
    public override string ToString() => Row();
}

/// <summary>
/// Runs <see cref="OpParity"/> definitions on both sides and compares them (PyTorch's result is the expected value).
/// </summary>
/// <example>
/// <code>
/// using var harness = new ParityHarness(PythonSession.Isolated());
/// var relu = new OpParity("relu", "lambda x: torch.relu(x)", t => torch.nn.functional.relu(t[0]), ParityInput.Normal(4, 5));
/// var result = harness.Run(relu, DType.Float32, ParityLayout.Transposed);
/// Assert.That(result.Passed, result.Row());
/// </code>
/// </example>
public sealed class ParityHarness : IDisposable
{
    private readonly PythonSession _session;
    private readonly bool _ownsSession;
    private readonly PythonRef _module;
    private readonly PythonRef _run;

    /// <summary>A harness over <paramref name="session"/> (disposed with the harness when <paramref name="ownsSession"/>).</summary>
    public ParityHarness(PythonSession session, bool ownsSession = true)
    {
        _session = session ?? throw new ArgumentNullException(nameof(session));
        _ownsSession = ownsSession;
        _module = session.LoadFile(Path.Combine(AppContext.BaseDirectory, "interop_testing", "interop_parity.py"));
        _run = _module.GetAttr("run");
        using var version = _module.GetAttr("version");
        using var v = version.Call();
        PyTorchVersion = v.AsString();
    }

    /// <summary>The session's PyTorch version.</summary>
    public string PyTorchVersion { get; }

    /// <summary>Runs <paramref name="op"/> on inputs generated from <paramref name="seed"/> in <paramref name="dtype"/> with <paramref name="layout"/>.</summary>
    public ParityResult Run(OpParity op, DType dtype, ParityLayout layout, int seed = 1234)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentNullException.ThrowIfNull(dtype);
        var shapes = string.Join(" ", op.Inputs.Select(i => i.ToString()));
        using var scope = torch.NewDisposeScope();
        var inputs = Generate(op.Inputs, dtype, layout, seed);
        TensorOperand expected, actual;
        try
        {
            var args = new object?[inputs.Length + 2];
            args[0] = op.PyTorch;
            args[1] = layout switch { ParityLayout.Transposed => "transposed", ParityLayout.Strided => "strided", _ => "contiguous" };
            for (var i = 0; i < inputs.Length; i++)
                args[i + 2] = inputs[i];
            using (var result = _run.Call(args))
                expected = TensorOperand.FromPythonValue(result);
            actual = TorchSharpOperands.FromTensor(op.TorchSharp(inputs));
        }
        catch (Exception e) when (e is Errors.PythonErrorException or System.Runtime.InteropServices.ExternalException or NotSupportedException or ArgumentException)
        {
            var message = e.Message.Split('\n')[0];
            return new ParityResult(op.Name, dtype, shapes, layout, double.NaN, double.NaN,
                                    TensorComparer.Compare(TensorOperand.Scalar(0), TensorOperand.Scalar(0)), message.Length > 120 ? message[..120] + "…" : message);
        }
        var options = op.Options ?? CloseOptions.Default;
        var verdict = TensorComparer.Compare(actual, expected, options);
        var (abs, rel) = TensorComparer.Differences(actual, expected);
        return new ParityResult(op.Name, dtype, shapes, layout, abs, rel, verdict);
    }

    /// <summary>The results as a Markdown table (op, dtype, shapes, layout, greatest absolute and relative difference, verdict).</summary>
    public static string Table(IEnumerable<ParityResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var sb = new StringBuilder();
        sb.AppendLine("| op | dtype | input shapes | layout | greatest abs. diff | greatest rel. diff | verdict |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in results)
            sb.AppendLine(r.Row());
        return sb.ToString();
    }

    private static torch.Tensor[] Generate(ParityInput[] inputs, DType dtype, ParityLayout layout, int seed)
    {
        var generator = new Random(seed);
        var scalar = TorchSharpTensors.ScalarTypeOf(dtype);
        var result = new torch.Tensor[inputs.Length];
        for (var i = 0; i < inputs.Length; i++)
        {
            var input = inputs[i];
            var count = input.Shape.Aggregate(1L, (a, b) => a * b);
            if (input.Kind == ParityInputKind.Index)
            {
                var indices = new long[count];
                for (var k = 0; k < count; k++)
                    indices[k] = generator.NextInt64(input.High);
                result[i] = torch.tensor(indices, input.Shape);
                continue;
            }
            var values = new double[count];
            for (var k = 0; k < count; k++)
            {
                var normal = Math.Sqrt(-2 * Math.Log(1 - generator.NextDouble())) * Math.Cos(2 * Math.PI * generator.NextDouble());
                values[k] = input.Kind == ParityInputKind.Positive ? 0.1 + Math.Abs(normal) : normal;
            }
            var contiguous = torch.tensor(values, input.Shape).to_type(scalar);
            result[i] = WithLayout(contiguous, layout);
        }
        return result;
    }

    /// <summary>The same values in the requested layout (as interop_parity.py builds it on the PyTorch side).</summary>
    private static torch.Tensor WithLayout(torch.Tensor t, ParityLayout layout)
    {
        if (layout == ParityLayout.Contiguous || t.numel() == 0)
            return t;
        if (layout == ParityLayout.Transposed && t.dim() >= 2)
            return t.transpose(-1, -2).contiguous().transpose(-1, -2);
        var flat = torch.empty(t.numel() * 2, dtype: t.dtype);
        var view = flat.slice(0, 0, t.numel() * 2, 2);
        view.copy_(t.reshape(-1));
        return flat.as_strided(t.shape, t.contiguous().stride().Select(s => s * 2).ToArray());
    }

    /// <summary>Releases the Python objects (and the session when owned).</summary>
    public void Dispose()
    {
        _run.Dispose();
        _module.Dispose();
        if (_ownsSession)
            _session.Dispose();
    }
}
