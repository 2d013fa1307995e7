// <readme>
using Interop.Testing;
using NUnit.Framework;

float[,] expected = { { 1f, 2f }, { 3f, float.NaN } };
float[,] actual = { { 1f, 2.000001f }, { 3f, float.NaN } };
Assert.That(actual, TensorIs.CloseTo(expected).EqualNan());          // torch.testing.assert_close's rules (float32: rtol 1.3e-6, atol 1e-5)
float[] got = { 1f, 2f, 3f }, want = { 1f, 2.5f, 3f };
try
{
    TensorAssert.Close(got, want);                                   // PyTorch's default tolerances and its message
}
catch (AssertionException e)
{
    Console.WriteLine(e.Message);                                    // "Tensor-likes are not close! Mismatched elements: 1 / 3 (33.3%) ..."
}
// </readme>
