"""interop_helpers.torch_export: every branch of the export policy, against the installed PyTorch (1.13 or 2.x).

Tests that depend on the PyTorch generation say which in their skip reason or their name.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import torch_export as te  # noqa: E402

TORCH_MAJOR = int(torch.__version__.split(".")[0])


def shares_memory(tensor, array):
    return array.__array_interface__["data"][0] == tensor.data_ptr()


# ---- the zero-copy path ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", sorted(te.numpy_dtypes(), key=str))
def test_cpu_tensor_of_a_numpy_dtype_passes_through_unchanged_and_shares(dtype):
    t = torch.zeros(2, 3, dtype=dtype)
    prepared = te.prepare(t)
    assert prepared is t
    a = prepared.numpy()
    assert shares_memory(t, a)
    assert a.shape == (2, 3)


def test_export_shares_memory_both_ways():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = te.export(t)
    a[1, 2] = 42.0
    assert t[1, 2].item() == 42.0
    t[0, 0] = -1.0
    assert a[0, 0] == -1.0


def test_non_contiguous_cpu_tensor_is_exported_strided_without_copy():
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    t = base.t()[::2]
    a = te.export(t)
    assert shares_memory(t, a)
    np.testing.assert_array_equal(a, base.numpy().T[::2])


# ---- requires_grad ---------------------------------------------------------------------------------

def test_requires_grad_is_detached_by_default_and_keeps_sharing():
    t = torch.arange(4, dtype=torch.float32).requires_grad_()
    prepared = te.prepare(t)
    assert not prepared.requires_grad
    assert prepared.data_ptr() == t.data_ptr()
    np.testing.assert_array_equal(te.export(t), [0, 1, 2, 3])


def test_requires_grad_with_detach_off_raises_requires_grad_error():
    t = torch.ones(2, requires_grad=True)
    with pytest.raises(te.RequiresGradError, match="detach"):
        te.prepare(t, detach=False)


def test_without_the_policy_pytorch_refuses_requires_grad():
    with pytest.raises(RuntimeError, match="requires grad"):
        torch.ones(2, requires_grad=True).numpy()


def test_non_leaf_result_of_a_graph_is_detached():
    w = torch.ones(3, requires_grad=True)
    y = w * 2
    np.testing.assert_array_equal(te.export(y), [2, 2, 2])


# ---- conjugate and negative views ------------------------------------------------------------------

def test_conjugate_view_is_resolved():
    t = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj()
    assert t.is_conj()
    np.testing.assert_array_equal(te.export(t), np.array([1 - 2j, 3 + 4j], dtype=np.complex64))


def test_negative_view_is_resolved():
    # The imaginary part of a conjugate view is a negative view (PyTorch 1.10+).
    t = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex128).conj().imag
    assert t.is_neg()
    np.testing.assert_array_equal(te.export(t), [-2.0, 4.0])


def test_without_the_policy_pytorch_refuses_conjugate_views():
    with pytest.raises(RuntimeError, match="conjugate"):
        torch.tensor([1j]).conj().numpy()


# ---- dtypes NumPy lacks ----------------------------------------------------------------------------

def test_bfloat16_is_refused_by_default_naming_the_upcast():
    t = torch.tensor([1.5, -2.25], dtype=torch.bfloat16)
    with pytest.raises(te.UnsupportedDTypeError, match="upcast=True"):
        te.prepare(t)


def test_bfloat16_upcasts_to_float32_on_request():
    t = torch.tensor([1.5, -2.25, 3.0e38], dtype=torch.bfloat16)
    a = te.export(t, upcast=True)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, t.float().numpy())


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_complex32_upcasts_to_complex64_on_request():
    t = torch.tensor([1 + 2j], dtype=torch.complex64).to(torch.complex32)
    with pytest.raises(te.UnsupportedDTypeError):
        te.prepare(t)
    a = te.export(t, upcast=True)
    assert a.dtype == np.complex64
    np.testing.assert_array_equal(a, [1 + 2j])


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason=f"PyTorch {torch.__version__} has no float8 dtypes (they arrived in 2.1)")
@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_is_refused_by_default_and_upcasts_to_float32(name):
    t = torch.tensor([0.5, -1.0, 2.0]).to(getattr(torch, name))
    with pytest.raises(te.UnsupportedDTypeError):
        te.prepare(t)
    a = te.export(t, upcast=True)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, [0.5, -1.0, 2.0])


@pytest.mark.skipif(not hasattr(torch, "bits8"), reason=f"PyTorch {torch.__version__} has no bits dtypes")
def test_bits_dtype_has_no_upcast_and_says_so():
    t = torch.zeros(2, dtype=torch.uint8).view(torch.bits8)
    with pytest.raises(te.UnsupportedDTypeError, match="no lossless widening"):
        te.prepare(t, upcast=True)


@pytest.mark.skipif(not hasattr(torch, "uint16"), reason=f"PyTorch {torch.__version__} has no uint16 tensors (arrived in 2.3)")
def test_uint16_exports_directly_on_torch_2():
    t = torch.tensor([1, 65535], dtype=torch.uint16)
    a = te.export(t)
    assert a.dtype == np.uint16 and shares_memory(t, a)


def test_uint16_is_not_in_numpy_dtypes_on_torch_1():
    # 1.13 has no torch.uint16 (its from_numpy refuses uint16 arrays); 2.3+ exports it as NumPy uint16.
    assert (getattr(torch, "uint16", None) in te.numpy_dtypes()) == (TORCH_MAJOR >= 2)


def test_upcast_does_nothing_to_numpy_dtypes():
    t = torch.ones(3, dtype=torch.float16)
    assert te.prepare(t, upcast=True) is t


# ---- layouts and devices ---------------------------------------------------------------------------

def test_sparse_tensor_is_refused_naming_to_dense():
    t = torch.eye(3).to_sparse()
    with pytest.raises(te.UnsupportedLayoutError, match="to_dense"):
        te.prepare(t)


def test_quantized_tensor_is_refused_naming_dequantize():
    t = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)
    with pytest.raises(te.UnsupportedLayoutError, match="dequantize"):
        te.prepare(t)


def test_meta_tensor_is_refused_with_a_clear_error_not_a_crash():
    t = torch.empty(2, 3, device="meta")
    with pytest.raises(te.UnsupportedDeviceError, match="meta"):
        te.prepare(t)


def test_meta_tensor_requiring_grad_is_still_a_device_error():
    t = torch.empty(2, device="meta", requires_grad=True)
    with pytest.raises(te.UnsupportedDeviceError):
        te.prepare(t, detach=False)


def test_not_a_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="ndarray"):
        te.prepare(np.zeros(2))


def test_every_refusal_is_an_export_error_and_a_value_error():
    for cls in (te.UnsupportedDTypeError, te.UnsupportedLayoutError, te.UnsupportedDeviceError, te.RequiresGradError):
        assert issubclass(cls, te.ExportError) and issubclass(cls, ValueError)
        assert cls.__module__ == "interop_helpers.torch_export"


def test_force_numpy_exists_in_both_generations_but_detaches_silently():
    # Tensor.numpy(force=True) arrived in 1.13; the policy does not use it so that detaching stays a choice.
    t = torch.ones(2, requires_grad=True)
    np.testing.assert_array_equal(t.numpy(force=True), [1, 1])


# ---- export's shortcut (Tensor.numpy() first, the full policy when it refuses) gives prepare's results and errors -----

def _export_fixtures():
    cases = [
        ("float32", lambda: torch.arange(6, dtype=torch.float32).reshape(2, 3)),
        ("strided view", lambda: torch.arange(12, dtype=torch.float64).reshape(3, 4).t()[::2]),
        ("0-d", lambda: torch.tensor(3, dtype=torch.int64)),
        ("empty", lambda: torch.zeros(0, 4)),
        ("bool", lambda: torch.ones(3, dtype=torch.bool)),
        ("requires grad", lambda: torch.ones(3, requires_grad=True)),
        ("non-leaf", lambda: torch.ones(3, requires_grad=True) * 2),
        ("conj", lambda: torch.tensor([1 + 2j, 3 - 1j]).conj()),
        ("neg", lambda: torch.tensor([1 + 2j]).conj().imag),
        ("bfloat16", lambda: torch.ones(2, dtype=torch.bfloat16)),
        ("sparse", lambda: torch.eye(3).to_sparse()),
        ("quantized", lambda: torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)),
        ("meta", lambda: torch.empty(2, 3, device="meta")),
        ("meta requiring grad", lambda: torch.empty(2, device="meta", requires_grad=True)),
        ("parameter", lambda: torch.nn.Parameter(torch.ones(2))),
        ("not a tensor", lambda: np.zeros(2)),
    ]
    if hasattr(torch, "complex32"):
        cases.append(("complex32", lambda: torch.ones(2, dtype=torch.complex32)))
    return cases


def _outcome(fn):
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - the type and message are what is compared
        return ("raised", type(e), str(e))
    return ("value", result.dtype, result.shape, result.strides, result.tolist())


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("upcast", [False, True])
@pytest.mark.parametrize("name, make", _export_fixtures(), ids=[c[0] for c in _export_fixtures()])
def test_export_gives_what_prepare_then_numpy_gives(name, make, detach, upcast):
    expected = _outcome(lambda: te.prepare(make(), detach=detach, upcast=upcast).numpy())
    assert _outcome(lambda: te.export(make(), detach=detach, upcast=upcast)) == expected


def test_export_of_a_plain_cpu_tensor_still_shares_memory():
    t = torch.arange(4, dtype=torch.int32)
    assert shares_memory(t, te.export(t))
