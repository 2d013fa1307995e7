using Interop.Cli;

namespace Interop.Tests;

[TestFixture]
[Category("numpy")]
[Category("torch")]
public class SeedDemoTests
{
    private SeedDemoFacts _facts = null!;
    private string _printed = "";

    [OneTimeSetUp]
    public void RunDemo()
    {
        using var output = new StringWriter();
        _facts = SeedDemo.Run(output);
        _printed = output.ToString();
    }

    [Test]
    public void From_numpy_keeps_the_arrays_dtype()
    {
        var expected = OperatingSystem.IsWindows() && TestPython.Installation.NumPyVersion!.StartsWith('1') ? "int32" : "int64";
        Assert.That(_facts.ArrayDType, Is.EqualTo(expected));
        Assert.That(_facts.TensorDType, Is.EqualTo("torch." + expected));
    }

    [Test]
    public void From_numpy_shares_memory_with_the_array()
    {
        Assert.That(_facts.TensorElementAfterWrite, Is.EqualTo(100), "a write to the array must be seen by the tensor");
        Assert.That(_facts.FromNumpySharesMemory);
    }

    [Test]
    public void Numpy_export_shares_memory_and_keeps_float32()
    {
        Assert.That(_facts.FloatTensorDType, Is.EqualTo("torch.float32"));
        Assert.That(_facts.FloatArrayDType, Is.EqualTo("float32"));
        Assert.That(_facts.NumpySharesMemory);
    }

    [Test]
    public void The_dotnet_view_is_zero_copy_with_numpy_shape_strides_and_values()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_facts.ViewIsZeroCopy);
            Assert.That(_facts.ViewShape, Is.EqualTo(new long[] { 4, 3 }));
            Assert.That(_facts.ViewStrides, Is.EqualTo(new long[] { 12, 4 }));
            Assert.That(_facts.ViewDType, Is.EqualTo("float32"));
            Assert.That(_facts.ViewValues, Is.EqualTo(new float[] { 1, 2, 3, 2, 1, 3, 2, 3, 5, 5, 6, 4 }));
        });
    }

    [Test]
    public void The_demo_prints_all_four_steps()
    {
        for (var step = 1; step <= 4; step++)
            Assert.That(_printed, Does.Contain($"Step {step}."));
        Assert.That(_printed, Does.Contain("one buffer, no copy").And.Not.Contain("COPIED").And.Not.Contain("NOT SHARED"));
    }
}
