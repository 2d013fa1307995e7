#!/usr/bin/env python3
"""Device check: runs the export policy's CUDA tests on this machine. Needs Python, NumPy, pytest and a CUDA
build of PyTorch; no .NET.

    python3 python/device_check.py            # exit 0: passed; 1: failed; 2: no CUDA device (tests skipped)

It prints the versions and the device, then runs python/tests/test_torch_export_cuda.py (real CUDA tensors:
float32, float16, bfloat16 with upcast, a non-contiguous tensor, a tensor that requires grad, a conjugate view;
values checked against the CPU) and the CPU policy tests, with skip reasons shown.
"""
import sys
from pathlib import Path


def main():
    here = Path(__file__).resolve().parent
    try:
        import numpy
        import pytest
        import torch
    except ImportError as e:
        print(f"device check: missing package: {e.name}. Install numpy, pytest and a CUDA build of torch.")
        return 1
    cuda = torch.cuda.is_available()
    print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__}, "
          f"CUDA build {torch.version.cuda}, CUDA available: {cuda}")
    if cuda:
        print(f"device 0: {torch.cuda.get_device_name(0)}")
    tests = [str(here / "tests" / "test_torch_export_cuda.py"), str(here / "tests" / "test_torch_export.py")]
    rc = pytest.main(["-q", "-rs", "-p", "no:cacheprovider", *tests])
    if rc != 0:
        return 1
    if not cuda:
        print("device check: no CUDA device here, so the CUDA tests were skipped (see the reasons above).")
        return 2
    print("device check: passed on CUDA.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
