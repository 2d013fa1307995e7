// Design notes: Python-side PyTorch, in a process that does not load TorchSharp (one libtorch per process).
// FromNumPy calls the real torch.from_numpy and Numpy() the real Tensor.numpy() (after the export policy of
// python/interop_helpers/torch_export.py): both share memory. Every import of Python torch from .NET goes
// through Import() below, the one place where a libtorch guard can run before torch loads.
// Hot paths (FromNumPy, Numpy, Prepare) take the GIL once and call CPython directly (Native/DirectCall); the tensor
// keeps a raw reference (Native/OwnedReference) and makes a pythonnet PyObject only when PyObject is read.
using Interop.Diagnostics;
using Interop.DTypes;
using Interop.Embedding;
using Interop.Errors;
using Interop.Native;
using Interop.NumPy;
using Python.Runtime;

namespace Interop.Torch;

/// <summary>A <c>torch.Tensor</c> living in the embedded interpreter. Owns one Python reference.</summary>
public sealed class TorchTensor : IDisposable
{
    private readonly OwnedReference _reference;

    private TorchTensor(PyObject obj) => _reference = OwnedReference.Take(obj);

    private TorchTensor(OwnedReference reference) => _reference = reference;

    /// <summary>The underlying Python object. Valid until <see cref="Dispose"/> (which disposes it).</summary>
    public PyObject PyObject => _reference.PyObject(typeof(TorchTensor));

    // The PyObject* (read with the GIL held; see Read).
    private nint Address => _reference.Address(typeof(TorchTensor));

    /// <summary>The PyObject* (borrowed; read it with the GIL held, like <see cref="PyObject"/>).</summary>
    internal nint ObjectAddress => Address;

    /// <summary>
    /// <c>torch.from_numpy(array)</c>: a tensor that <b>shares memory</b> with <paramref name="array"/> (writes to either are
    /// seen by the other; the array's memory stays alive while the tensor exists) and has the array's dtype. Read-only
    /// arrays are refused: PyTorch has no read-only tensors, so <c>torch.from_numpy</c> would hand out a writable tensor over
    /// memory NumPy (or an immutable <c>bytes</c> object) forbids writing, with only a once-per-process warning.
    /// </summary>
    /// <exception cref="ReadOnlyBufferException">The array is read-only (<c>arr.flags.writeable</c> is False); <see cref="CopyFromNumPy"/> copies it.</exception>
    /// <exception cref="TorchConversionException">PyTorch refused the array (negative strides, non-native byte order, a dtype
    /// PyTorch lacks such as uint16 before PyTorch 2.3, ...); carries PyTorch's own message. <see cref="CopyFromNumPy"/> copies instead.</exception>
    public static TorchTensor FromNumPy(NDArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        _ = array.ObjectAddress; // fail fast when disposed; read again with the GIL (see Read)
        try
        {
            // One GIL acquisition; the check and the call go straight to CPython (Native/DirectCall), not through
            // pythonnet's dynamic invocation.
            using var gil = PythonRuntime.AcquireGil();
            try
            {
                var obj = array.ObjectAddress;
                if (!IsWriteable(obj))
                    throw new ReadOnlyBufferException("TorchTensor.FromNumPy (torch.from_numpy shares the array's memory as a writable tensor; PyTorch has no read-only tensors)",
                        "copy it: TorchTensor.CopyFromNumPy(array) (a tensor over a private copy), or arr.copy() in NumPy; " +
                        "the same rule as View<T>() and AsTorchSharp(): read-only memory is never shared writable.");
                using (PythonWarnings.Capture("torch.from_numpy"))
                    return new TorchTensor(OwnedReference.Take(DirectCall.CallRaw(CPython.Address(FromNumpyFunction), obj, "torch.from_numpy")));
            }
            catch (PythonException e)
            {
                throw PythonErrors.Translate(e);
            }
        }
        catch (PythonErrorException e)
        {
            throw new TorchConversionException("torch.from_numpy", e,
                "TorchTensor.CopyFromNumPy(array) makes a C-contiguous, native-byte-order copy (layout and byte-order refusals); " +
                "for a dtype PyTorch lacks, convert first, e.g. arr.astype(np.int64)");
        }
    }

    // arr.flags.writeable, read with the GIL held (what torch.from_numpy would otherwise only warn about).
    private static bool IsWriteable(nint array)
    {
        if (NumPyArrayFields.TryIsWriteable(array, out var writeable))
            return writeable; // read in place, as NumPy's PyArray_FLAGS does (Native/NumPyArrayFields.cs)
        s_flagsName ??= new PyString("flags");
        s_writeableName ??= new PyString("writeable");
        return DirectCall.AttributeIsTrue(array, s_flagsName, s_writeableName, "arr.flags.writeable");
    }

    private static PyString? s_flagsName, s_writeableName; // attribute names, made once with the GIL; never disposed

    /// <summary>
    /// The opt-in alternative to <see cref="FromNumPy"/>: a tensor over a <b>copy</b> of <paramref name="array"/> in C order and
    /// native byte order (<c>interop_helpers.torch_export.from_numpy_copy</c>). It never shares memory, so it also accepts
    /// negative strides, big-endian and read-only arrays.
    /// </summary>
    /// <exception cref="TorchConversionException">PyTorch has no dtype for the array's elements.</exception>
    public static TorchTensor CopyFromNumPy(NDArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        _ = array.PyObject; // fail fast when disposed; read again with the GIL (see Read)
        try
        {
            return PythonRuntime.Run(() =>
            {
                using (PythonWarnings.Capture("torch_export.from_numpy_copy"))
                    return new TorchTensor(PolicyFunction("from_numpy_copy").Invoke(array.PyObject));
            });
        }
        catch (PythonErrorException e)
        {
            throw new TorchConversionException("torch.from_numpy (of a copy)", e, "convert the array to a dtype PyTorch has, e.g. arr.astype(np.int64)");
        }
    }

    /// <summary>Evaluates a Python expression (with <c>torch</c> and <c>np</c> imported) that yields a tensor.</summary>
    public static TorchTensor Evaluate(string expression) => PythonRuntime.Run(() =>
    {
        using var torch = Import();
        using var scope = Py.CreateScope();
        scope.Set("torch", torch);
        scope.Exec("import numpy as np");
        PyObject value;
        using (PythonWarnings.Capture("TorchTensor.Evaluate"))
            value = scope.Eval(expression);
        using var tensorType = torch.GetAttr("Tensor");
        if (!value.IsInstance(tensorType))
        {
            value.Dispose();
            throw new ArgumentException($"'{expression}' did not produce a torch.Tensor.", nameof(expression));
        }
        return new TorchTensor(value);
    });

    /// <summary>
    /// The export policy, then the real <c>tensor.numpy()</c>: an ndarray that <b>shares memory</b> with this tensor when it
    /// is a CPU tensor of a NumPy dtype (also when it requires grad and <see cref="ExportOptions.Detach"/> is on), and with
    /// a prepared copy otherwise (moved to the CPU, conjugate/negative views resolved, upcast on request). See docs/torch.md.
    /// </summary>
    /// <exception cref="TensorExportException">The policy refused the tensor; the subclass says why and the message names the fix.</exception>
    public NDArray Numpy(ExportOptions? options = null) => NDArray.Own(CallPolicy("export", options));

    /// <summary>
    /// <c>interop_helpers.torch_export.prepare(tensor, ...)</c>: the CPU tensor that <see cref="Numpy"/> would export
    /// (this same tensor when nothing needs to change).
    /// </summary>
    /// <exception cref="TensorExportException">The policy refused the tensor.</exception>
    public TorchTensor Prepare(ExportOptions? options = null) => new(CallPolicy("prepare", options));

    // ---- what the tensor is (PyTorch's own attributes, read with the GIL; each property is one Python lookup) ----------

    /// <summary><c>tensor.shape</c>: the dimensions (empty for a 0-d tensor).</summary>
    public long[] Shape => Read(t =>
    {
        using var shape = t.GetAttr("shape");
        return shape.As<long[]>();
    });

    /// <summary><c>tensor.stride()</c>: the strides <b>in elements</b>, as PyTorch reports them (NumPy and <see cref="NDArray.Strides"/> count bytes).</summary>
    public long[] Strides => Read(t =>
    {
        using var strides = t.InvokeMethod("stride");
        return strides.As<long[]>();
    });

    /// <summary><c>tensor.storage_offset()</c>: where element [0, ...] lies in the storage, in elements.</summary>
    public long StorageOffset => Read(t =>
    {
        using var offset = t.InvokeMethod("storage_offset");
        return offset.As<long>();
    });

    /// <summary><c>tensor.dim()</c>: the number of dimensions.</summary>
    public int Rank => Read(t =>
    {
        using var rank = t.InvokeMethod("dim");
        return rank.As<int>();
    });

    /// <summary><c>tensor.numel()</c>: the number of elements.</summary>
    public long ElementCount => Read(t =>
    {
        using var count = t.InvokeMethod("numel");
        return count.As<long>();
    });

    /// <summary><c>tensor.dtype</c> as a row of the dtype table (bfloat16 included, which has no .NET element type).</summary>
    /// <exception cref="UnsupportedDTypeException">The dtype has no row in the table (quantized, float8, complex32, bits types, ...); <see cref="DTypeName"/> names it.</exception>
    public DType DType
    {
        get
        {
            var name = DTypeName;
            return DType.FromName(name) ?? throw new UnsupportedDTypeException(
                $"{name} (a PyTorch dtype with no row in the dtype table; DTypeName reports it, and tensor.to(torch.float32) or dequantize() converts it)", null);
        }
    }

    /// <summary><c>str(tensor.dtype)</c>, e.g. <c>torch.float32</c>; also for dtypes outside the table.</summary>
    public string DTypeName => Read(t =>
    {
        using var dtype = t.GetAttr("dtype");
        return dtype.ToString() ?? "?";
    });

    /// <summary><c>str(tensor.device)</c>: <c>cpu</c>, <c>cuda:0</c>, <c>meta</c>, ...</summary>
    public string Device => Read(t =>
    {
        using var device = t.GetAttr("device");
        return device.ToString() ?? "?";
    });

    /// <summary><c>tensor.requires_grad</c>.</summary>
    public bool RequiresGrad => Read(t =>
    {
        using var value = t.GetAttr("requires_grad");
        return value.IsTrue();
    });

    /// <summary><c>tensor.is_contiguous()</c>.</summary>
    public bool IsContiguous => Read(t =>
    {
        using var value = t.InvokeMethod("is_contiguous");
        return value.IsTrue();
    });

    /// <summary><c>str(tensor.layout)</c>: <c>torch.strided</c>, <c>torch.sparse_coo</c>, ...</summary>
    public string Layout => Read(t =>
    {
        using var layout = t.GetAttr("layout");
        return layout.ToString() ?? "?";
    });

    /// <summary><c>tensor.data_ptr()</c>: the address of the first element.</summary>
    public nint DataPointer => Read(t =>
    {
        using var pointer = t.InvokeMethod("data_ptr");
        return (nint)pointer.As<long>();
    });

    /// <summary>Returns <c>str(tensor)</c>.</summary>
    public override string ToString() => Read(t => t.ToString() ?? "");

    /// <summary>Releases the Python reference (with the GIL, at once). Harmless when called again.</summary>
    public void Dispose() => _reference.Dispose();

    /// <summary>
    /// Imports torch (with the GIL held), with a typed error when it is missing. The one place .NET imports Python
    /// <c>torch</c>: everything else (the export policy, sessions) comes through here first.
    /// </summary>
    internal static PyObject Import()
    {
        Gil.AssertHeld();
        PythonRuntime.RequirePackage("torch");
        LibTorchGuard.CheckBeforeImportingPythonTorch(); // one libtorch per process: refuse before loading a second
        return Py.Import("torch");
    }

    /// <summary>Imports <c>interop_helpers.torch_export</c> (which imports torch) after <see cref="Import"/>.</summary>
    internal static PyObject ImportExportModule()
    {
        using (Import())
            return Py.Import(TorchExport.ModuleName);
    }

    // Looked up once, with the GIL, after the guarded Import(): modules and their functions live as long as the
    // interpreter, so caching them saves an import lookup and an attribute lookup per call. Never disposed.
    // The GIL serialises the dictionary operations; two threads racing through a first lookup both store the same function.
    private static PyObject? s_fromNumpy;
    private static readonly Dictionary<string, PyObject> s_policyFunctions = [];

    /// <summary><c>torch.from_numpy</c> (cached). Requires the GIL; never dispose the result.</summary>
    internal static PyObject FromNumpyFunction
    {
        get
        {
            Gil.AssertHeld();
            if (s_fromNumpy is null)
            {
                using var torch = Import();
                s_fromNumpy = torch.GetAttr("from_numpy");
            }
            return s_fromNumpy;
        }
    }

    /// <summary>A function of <c>interop_helpers.torch_export</c> (cached). Requires the GIL; never dispose the result.</summary>
    internal static PyObject PolicyFunction(string name)
    {
        Gil.AssertHeld();
        if (!s_policyFunctions.TryGetValue(name, out var function))
        {
            using var module = ImportExportModule();
            s_policyFunctions[name] = function = module.GetAttr(name);
        }
        return function;
    }

    // ("detach", "upcast"): the keyword names of a direct policy call (cached; never disposed).
    private static PyTuple? s_policyKeywordNames;

    // Calls torch_export.<function>(this tensor, detach=..., upcast=...) with one GIL acquisition, straight through
    // CPython's vectorcall (Native/DirectCall); the policy's refusals become typed exceptions.
    private OwnedReference CallPolicy(string function, ExportOptions? options)
    {
        _ = Address; // fail fast when disposed; read again with the GIL (see Read)
        var o = options ?? ExportOptions.Default;
        try
        {
            using var gil = PythonRuntime.AcquireGil();
            try
            {
                s_policyKeywordNames ??= new PyTuple([new PyString("detach"), new PyString("upcast")]);
                ReadOnlySpan<nint> args = [Address, CPython.Address(PythonBools.Get(o.Detach)), CPython.Address(PythonBools.Get(o.Upcast))];
                var operation = function switch { "export" => "torch_export.export", "prepare" => "torch_export.prepare", _ => "torch_export." + function };
                using (PythonWarnings.Capture(operation))
                {
                    if (function == "export" && ExportShortcut(Address) is var exported and not 0)
                        return OwnedReference.Take(exported);
                    return OwnedReference.Take(DirectCall.CallRaw(CPython.Address(PolicyFunction(function)), args, 1, CPython.Address(s_policyKeywordNames), operation));
                }
            }
            catch (PythonException e)
            {
                throw PythonErrors.Translate(e);
            }
        }
        catch (PythonErrorException e)
        {
            throw TorchExport.Translate(e);
        }
    }

    // torch_export.export's own shortcut, taken here without a Python frame: a plain torch.Tensor (type(t) is
    // torch_export._Tensor) of a dtype in torch_export._NUMPY_DTYPES goes straight to Tensor.numpy(), which refuses
    // (torch_export._NUMPY_REFUSALS) whatever the policy would change or refuse; then 0, and the full policy runs. The
    // objects are the module's own, so the rule has one definition (python/interop_helpers/torch_export.py).
    private static PyObject? s_plainTensorType, s_numpyDTypes, s_numpyRefusals, s_numpyMethod, s_dimMethod, s_dtypeName;

    private static void LoadExportObjects()
    {
        if (s_numpyMethod is not null)
            return;
        using var policy = ImportExportModule(); // guarded: imports torch only through Import()
        s_plainTensorType = policy.GetAttr("_Tensor");
        s_numpyDTypes = policy.GetAttr("_NUMPY_DTYPES");
        s_numpyRefusals = policy.GetAttr("_NUMPY_REFUSALS");
        s_dtypeName = new PyString("dtype");
        s_dimMethod = s_plainTensorType.GetAttr("dim");
        s_numpyMethod = s_plainTensorType.GetAttr("numpy"); // last: its presence says all are loaded
    }

    private static nint ExportShortcut(nint tensor)
    {
        LoadExportObjects();
        if (DirectCall.TypeOf(tensor) != CPython.Address(s_plainTensorType!) ||
            !DirectCall.AttributeIn(tensor, s_dtypeName!, s_numpyDTypes!, "tensor.dtype"))
            return 0;
        return DirectCall.TryCallRaw(CPython.Address(s_numpyMethod!), tensor, CPython.Address(s_numpyRefusals!), "Tensor.numpy");
    }

    /// <summary>
    /// The in-process session's export of a call's result when it is a plain tensor (<c>interop_helpers.calls.export_tree</c>'s
    /// tensor branch without its Python frames): <c>Tensor.numpy()</c> of a plain <c>torch.Tensor</c> of a NumPy dtype with
    /// at most <see cref="Sessions.ConversionLimits.MaxRank"/> dimensions, as a new reference; 0 for anything else
    /// (another type, a subclass, more dimensions, or a tensor <c>Tensor.numpy()</c> refuses), which the caller hands to
    /// <c>export_tree</c>: the full policy then gives the same result or raises the same error as before. Requires the GIL
    /// and torch imported (through <see cref="Import"/>); <paramref name="result"/> is borrowed.
    /// </summary>
    internal static nint ExportPlainResult(nint result)
    {
        Gil.AssertHeld();
        LoadExportObjects();
        if (DirectCall.TypeOf(result) != CPython.Address(s_plainTensorType!))
            return 0;
        var dim = DirectCall.CallRaw(CPython.Address(s_dimMethod!), result, "Tensor.dim");
        var inRange = DirectCall.TryAsInt64(dim, out var rank) && rank <= Sessions.ConversionLimits.MaxRank;
        OwnedReference.DecRef(dim);
        return inRange ? ExportShortcut(result) : 0; // beyond the limit: export_tree raises check_rank's error
    }

    // The object is read with the GIL held: Dispose releases it with the GIL, so a Dispose on another thread either
    // happened before (ObjectDisposedException) or waits until this use is over; a reference read before taking the
    // GIL could be released in between and reach CPython as a null pointer.
    private T Read<T>(Func<PyObject, T> read)
    {
        _ = PyObject;
        return PythonRuntime.Run(() => read(PyObject));
    }
}
