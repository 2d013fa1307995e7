"""Wrapping memory that .NET exports into NumPy arrays.

The .NET side passes an *owner* (a PyCapsule whose destructor unpins the .NET memory) and the memory's
address, shape, strides and type string. The array keeps a small holder object as its ``base``; the holder
keeps the owner, so the .NET memory stays pinned exactly as long as any array (or tensor made with
``torch.from_numpy``) still uses it.
"""

import numpy as np


class ExportedMemory:
    """The ``base`` of an array over .NET memory; holds the owner capsule."""

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner, address, shape, typestr, strides, readonly):
        self.owner = owner
        self.__array_interface__ = {
            "version": 3,
            "shape": tuple(shape),
            "typestr": typestr,
            "data": (address, bool(readonly)),
            "strides": None if strides is None else tuple(strides),
        }


def wrap(owner, address, shape, typestr, strides=None, readonly=False):
    """An ndarray over ``address`` that keeps ``owner`` alive (via its ``base``) until NumPy drops it."""
    return np.asarray(ExportedMemory(owner, address, shape, typestr, strides, readonly))
