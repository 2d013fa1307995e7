"""Checks interop_helpers.dtypes against NumPy and PyTorch as installed."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import dtypes  # noqa: E402

KIND_CHARS = {"bool": "b", "int": "i", "uint": "u", "float": "f", "complex": "c"}


@pytest.mark.parametrize("name", [n for n, row in dtypes.DTYPES.items() if row[2] is not None])
def test_numpy_agrees(name):
    kind, itemsize, numpy_name, _, _ = dtypes.DTYPES[name]
    dt = np.dtype(numpy_name)
    assert dt.itemsize == itemsize
    assert dt.kind == KIND_CHARS[kind]
    # Every NumPy dtype in the table can be exported through the buffer protocol.
    assert memoryview(np.zeros(2, dt)).itemsize == itemsize


def test_bfloat16_has_no_numpy_dtype():
    with pytest.raises(TypeError):
        np.dtype("bfloat16")


@pytest.mark.parametrize("name", list(dtypes.DTYPES))
def test_torch_agrees(name):
    torch = pytest.importorskip("torch")
    _, itemsize, _, torch_name, _ = dtypes.DTYPES[name]
    attr = torch_name.split(".", 1)[1]
    if not hasattr(torch, attr):
        pytest.skip(f"this PyTorch ({torch.__version__}) has no {torch_name} (unsigned 16/32/64-bit arrived in 2.3)")
    dt = getattr(torch, attr)
    assert torch.empty(0, dtype=dt).element_size() == itemsize
