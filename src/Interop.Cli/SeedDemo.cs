// The seed, end to end, with real calls: NumPy -> torch.from_numpy -> shared memory -> Tensor.numpy()
// -> the buffer protocol -> .NET spans, and the proof that nothing was copied.
using System.Numerics.Tensors;
using Interop.Embedding;
using Interop.NumPy;
using Interop.Torch;

namespace Interop.Cli;

/// <summary>What the demo observed; the tests assert these facts.</summary>
public sealed record SeedDemoFacts(
    string ArrayDType, string TensorDType, long TensorElementAfterWrite, bool FromNumpySharesMemory,
    string FloatTensorDType, string FloatArrayDType, long[] ViewShape, long[] ViewStrides, string ViewDType,
    float[] ViewValues, bool NumpySharesMemory, bool ViewIsZeroCopy);

/// <summary>Runs the seed demo and prints each step.</summary>
public static class SeedDemo
{
    private const string Data = "[[1, 2, 3], [2, 1, 3], [2, 3, 5], [5, 6, 4]]";

    /// <summary>Runs the four steps, writing to <paramref name="output"/>.</summary>
    public static SeedDemoFacts Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var installation = PythonRuntime.Initialize();
        output.WriteLine($"Embedded {installation}");
        output.WriteLine();

        output.WriteLine("Step 1. A NumPy array becomes a PyTorch tensor through the real torch.from_numpy");
        using var array = NDArray.Evaluate($"np.array({Data})");
        using var tensor = TorchTensor.FromNumPy(array);
        output.WriteLine($"  a = np.array({Data})");
        output.WriteLine(Indent(array.ToString(), "  a = "));
        output.WriteLine($"  type(a) = {TypeName(array.PyObject)}, a.dtype = {array.DTypeName}");
        output.WriteLine(Indent(tensor.ToString(), "  t = torch.from_numpy(a) = "));
        output.WriteLine($"  type(t) = {TypeName(tensor.PyObject)}, t.dtype = {tensor.DTypeName}");
        output.WriteLine($"  (NumPy's default integer is the C long: int64 on Linux and macOS, int32 on Windows before NumPy 2.0; the seed showed int32.)");
        output.WriteLine();

        output.WriteLine("Step 2. The tensor shares the array's memory: change a[0, 0] and look at t");
        PythonRuntime.Run(() => { array.PyObject[new Python.Runtime.PyTuple([new Python.Runtime.PyInt(0), new Python.Runtime.PyInt(0)])] = new Python.Runtime.PyInt(100); return 0; });
        output.WriteLine("  a[0, 0] = 100");
        output.WriteLine(Indent(tensor.ToString(), "  t = "));
        var element = PythonRuntime.Run(() => tensor.PyObject[0][0].InvokeMethod("item").As<long>());
        var fromNumpyShares = element == 100 && tensor.DataPointer == array.Address;
        output.WriteLine($"  t[0, 0] = {element}; t.data_ptr() = 0x{tensor.DataPointer:x}, a's data = 0x{array.Address:x}: {(fromNumpyShares ? "same memory" : "NOT SHARED")}");
        output.WriteLine();

        output.WriteLine("Step 3. A float tensor becomes a NumPy array through the real Tensor.numpy()");
        using var floats = TorchTensor.Evaluate($"torch.tensor({Data}, dtype=torch.float32)");
        using var exported = floats.Numpy();
        output.WriteLine(Indent(floats.ToString(), "  f = "));
        output.WriteLine($"  type(f) = {TypeName(floats.PyObject)}, f.dtype = {floats.DTypeName}");
        output.WriteLine(Indent(exported.ToString(), "  n = f.numpy() = "));
        output.WriteLine($"  type(n) = {TypeName(exported.PyObject)}, n.dtype = {exported.DTypeName}");
        output.WriteLine();

        output.WriteLine("Step 4. C# reads n through the buffer protocol, without copying");
        using var view = exported.ViewReadOnly<float>();
        var span = view.AsReadOnlySpan();
        ReadOnlyTensorSpan<float> tensorSpan = view.AsReadOnlyTensorSpan();
        var shape = view.Shape.ToArray().Select(d => (long)d).ToArray();
        var strides = view.Strides.ToArray().Select(d => (long)d).ToArray();
        output.WriteLine($"  ReadOnlySpan<float>: Length = {span.Length}, values = [{string.Join(", ", span.ToArray())}]");
        output.WriteLine($"  ReadOnlyTensorSpan<float>: Lengths = [{string.Join(", ", tensorSpan.Lengths.ToArray())}], Strides = [{string.Join(", ", tensorSpan.Strides.ToArray())}] elements");
        for (nint row = 0; row < tensorSpan.Lengths[0]; row++)
        {
            var cells = new List<float>();
            for (nint col = 0; col < tensorSpan.Lengths[1]; col++)
                cells.Add(tensorSpan[row, col]);
            output.WriteLine($"    row {row}: [{string.Join(", ", cells)}]");
        }
        output.WriteLine($"  shape = ({string.Join(", ", shape)}), strides = ({string.Join(", ", strides)}) bytes, dtype = {view.DType} -> {typeof(float).Name}");
        var numpyShares = exported.Address == floats.DataPointer;
        var zeroCopy = view.Address == floats.DataPointer;
        output.WriteLine($"  address seen by .NET = 0x{view.Address:x}, f.data_ptr() = 0x{floats.DataPointer:x}, n's data = 0x{exported.Address:x}: {(zeroCopy && numpyShares ? "one buffer, no copy" : "COPIED")}");
        return new SeedDemoFacts(array.DTypeName, tensor.DTypeName, element, fromNumpyShares, floats.DTypeName, exported.DTypeName,
                                 shape, strides, view.DType.Name, span.ToArray(), numpyShares, zeroCopy);
    }

    private static string TypeName(Python.Runtime.PyObject obj) =>
        PythonRuntime.Run(() => obj.GetPythonType().ToString() ?? "?");

    private static string Indent(string text, string first)
    {
        var pad = new string(' ', first.Length);
        return first + text.ReplaceLineEndings(Environment.NewLine + pad);
    }
}
