"""interop_helpers.exports over memory that Python itself owns (ctypes), standing in for .NET memory."""
import ctypes
import gc
import sys
import weakref
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import exports  # noqa: E402


class Owner:
    pass


def test_wrap_shares_memory_both_ways_and_keeps_owner_alive():
    buf = (ctypes.c_float * 6)(*range(6))
    owner = Owner()
    ref = weakref.ref(owner)
    a = exports.wrap(owner, ctypes.addressof(buf), (2, 3), "<f4")
    del owner
    assert a.dtype == np.float32 and a.shape == (2, 3)
    assert a.tolist() == [[0, 1, 2], [3, 4, 5]]
    a[1, 2] = 42
    assert buf[5] == 42
    buf[0] = -1
    assert a[0, 0] == -1
    view = a[:, 1:]
    del a
    gc.collect()
    assert ref() is not None, "a view of the array must keep the owner"
    del view
    gc.collect()
    assert ref() is None, "the owner must go once no array uses the memory"


def test_wrap_honours_strides_and_readonly():
    buf = (ctypes.c_int32 * 6)(*range(6))
    a = exports.wrap(Owner(), ctypes.addressof(buf), (3, 2), "<i4", strides=(4, 12), readonly=True)
    assert a.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert not a.flags.writeable
