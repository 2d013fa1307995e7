using NUnit.Framework;

namespace Interop.Testing;

/// <summary>
/// <c>torch.testing.assert_close</c> for .NET: throws NUnit's <see cref="AssertionException"/> with PyTorch's message.
/// Operands: TorchSharp tensors, <see cref="Interop.NumPy.NDArray"/>, <see cref="Interop.Torch.TorchTensor"/>, tensor
/// <see cref="Interop.Sessions.PythonValue"/>s, .NET arrays of any rank, <see cref="System.Numerics.Tensors.Tensor{T}"/>,
/// and <see cref="TensorOperand"/> (spans with a shape, tensor spans).
/// </summary>
public static class TensorAssert
{
    /// <summary>Asserts that the tensors are close (see <see cref="CloseOptions"/> for the defaults: PyTorch's).</summary>
    /// <exception cref="AssertionException">They are not; the message is PyTorch's.</exception>
    public static void Close(object actual, object expected, CloseOptions? options = null)
    {
        var result = Compare(actual, expected, options);
        if (!result.Passed)
            throw new AssertionException(result.Message ?? "");
    }

    /// <summary>Asserts that <paramref name="actual"/> and <paramref name="expected"/>, both of <paramref name="shape"/>, are close.</summary>
    public static void Close<T>(ReadOnlySpan<T> actual, ReadOnlySpan<T> expected, long[] shape, CloseOptions? options = null) where T : unmanaged =>
        Close(TensorOperand.FromSpan(actual, shape), TensorOperand.FromSpan(expected, shape), options);

    /// <summary>Asserts closeness with explicit tolerances.</summary>
    public static void Close(object actual, object expected, double rtol, double atol, bool equalNan = false) =>
        Close(actual, expected, new CloseOptions { Rtol = rtol, Atol = atol, EqualNan = equalNan });

    /// <summary>The verdict and statistics without throwing.</summary>
    public static CloseResult Compare(object actual, object expected, CloseOptions? options = null) =>
        TensorComparer.Compare(TensorOperand.From(actual), TensorOperand.From(expected), options);
}
