// <readme>
using Interop.Embedding;
using Interop.Torch;

PythonRuntime.Initialize();                       // optional: finds Python (see below) on first use
using var tensor = TorchTensor.Evaluate("torch.arange(12, dtype=torch.float32).reshape(3, 4)");
using var array = tensor.Numpy();                 // the real Tensor.numpy(): shares the tensor's memory
using var view = array.ViewReadOnly<float>();     // buffer protocol: no copy; holds the buffer until disposed
ReadOnlySpan<float> values = view.AsReadOnlySpan();
var strided = view.AsReadOnlyTensorSpan();        // System.Numerics.Tensors, any non-negative strides
float[] copy = array.ToArray<float>();            // To*/Copy* copy (gathering strides, swapping bytes)
// </readme>

Console.WriteLine($"values: {string.Join(' ', values.ToArray())}");
Console.WriteLine($"strided: lengths [{string.Join(", ", strided.Lengths.ToArray())}], strides [{string.Join(", ", strided.Strides.ToArray())}]");
Console.WriteLine($"copy: {copy.Length} floats, sum {copy.Sum()}");
