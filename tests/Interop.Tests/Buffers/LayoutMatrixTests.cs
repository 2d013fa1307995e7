using Interop.DTypes;

namespace Interop.Tests.Buffers;

/// <summary>
/// Every NumPy dtype of the table × every layout, bit-exactly against NumPy: copies, view shape and strides,
/// when a flat span is allowed, and the strided tensor span's element at every index.
/// </summary>
[TestFixture]
[Category("numpy")]
public class LayoutMatrixTests
{
    private static IEnumerable<TestCaseData> Cases() =>
        from dtype in NumPyOracle.NumPyDTypes
        from layout in NumPyOracle.Layouts
        select new TestCaseData(dtype.Name, layout).SetName($"Matrix_{dtype.Name}_{layout}");

    [TestCaseSource(nameof(Cases))]
    public void Dotnet_sees_what_numpy_sees(string dtypeName, string layout)
    {
        var dtype = DType.FromName(dtypeName)!;
        var (array, facts) = NumPyOracle.ArrayWithFacts(NumPyOracle.LayoutExpression(dtype, layout));
        using (array)
            Typed.Run(dtype, new OracleCheck(array, facts));
    }

    [Test]
    public void The_matrix_covers_every_numpy_dtype_of_the_table()
    {
        var names = NumPyOracle.NumPyDTypes.Select(d => d.Name).ToArray();
        Assert.That(names, Is.EquivalentTo(new[]
        {
            "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float16", "float32", "float64", "complex64", "complex128",
        }));
    }

    [Test]
    public void The_layouts_are_what_their_names_say()
    {
        // Guards the oracle itself: a layout that silently became C-contiguous would test nothing.
        Assert.Multiple(() =>
        {
            Assert.That(NumPyOracle.Eval<bool>("LAYOUTS['fortran']('float64').flags.f_contiguous and not LAYOUTS['fortran']('float64').flags.c_contiguous"));
            Assert.That(NumPyOracle.Eval<bool>("LAYOUTS['negative_rows']('int32').strides[0] < 0"));
            Assert.That(NumPyOracle.Eval<bool>("LAYOUTS['broadcast']('int32').strides[0] == 0"));
            Assert.That(NumPyOracle.Eval<bool>("LAYOUTS['big_endian']('float32').dtype.byteorder == '>'"));
            Assert.That(NumPyOracle.Eval<bool>("not LAYOUTS['misaligned']('float64').flags.aligned"));
            Assert.That(NumPyOracle.Eval<bool>("not LAYOUTS['misaligned']('complex64').flags.aligned"));
            Assert.That(NumPyOracle.Eval<bool>("LAYOUTS['zero_d']('int8').ndim == 0"));
            Assert.That(NumPyOracle.Eval<bool>("np.isnan(LAYOUTS['c_order']('float16')).any() and np.isinf(LAYOUTS['c_order']('float32')).any()"));
            Assert.That(NumPyOracle.Eval<bool>("LAYOUTS['c_order']('int64').min() == np.iinfo(np.int64).min and LAYOUTS['c_order']('uint64').max() == np.iinfo(np.uint64).max"));
        });
    }
}
