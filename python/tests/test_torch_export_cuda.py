"""The export policy with real CUDA tensors, checked against the same values computed on the CPU.

These run only where ``torch.cuda.is_available()``; elsewhere they skip with that reason. Run them on a GPU machine
(no .NET needed) with ``python3 python/device_check.py``.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import torch_export as te  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]


def cpu_reference(shape, dtype, seed=1234):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator) * 100).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
def test_cuda_tensor_is_copied_to_cpu_with_the_same_values(dtype):
    expected = cpu_reference((64, 33), dtype)
    t = expected.to("cuda")
    prepared = te.prepare(t)
    assert prepared.device.type == "cpu" and prepared.dtype == dtype
    a = prepared.numpy()
    np.testing.assert_array_equal(a, expected.numpy())


def test_cuda_bfloat16_is_refused_then_upcast_on_request():
    expected = cpu_reference((128,), torch.bfloat16)
    t = expected.to("cuda")
    with pytest.raises(te.UnsupportedDTypeError):
        te.prepare(t)
    a = te.export(t, upcast=True)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, expected.float().numpy())


def test_cuda_non_contiguous_tensor_keeps_its_values():
    base = cpu_reference((16, 24), torch.float32)
    t = base.to("cuda").t()[::3]
    assert not t.is_contiguous()
    np.testing.assert_array_equal(te.export(t), base.t()[::3].numpy())


def test_cuda_tensor_requiring_grad_is_detached_or_refused():
    base = cpu_reference((10,), torch.float32)
    w = base.to("cuda").requires_grad_()
    y = w * 3
    with pytest.raises(te.RequiresGradError):
        te.prepare(y, detach=False)
    np.testing.assert_array_equal(te.export(y), (base * 3).numpy())


def test_cuda_conjugate_view_is_resolved():
    t = torch.tensor([1 + 2j, -3j], dtype=torch.complex64, device="cuda").conj()
    np.testing.assert_array_equal(te.export(t), np.array([1 - 2j, 3j], dtype=np.complex64))
