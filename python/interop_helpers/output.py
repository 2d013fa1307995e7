"""Results written in place: arrays that an isolated worker returns without copying them (docs/isolated.md).

``empty(shape, dtype)`` gives an uninitialised ``torch.Tensor`` (or ``numpy.ndarray``) to fill and return::

    from interop_helpers import output

    def scale(x):
        out = output.empty(x.shape, x.dtype)
        torch.mul(x, 2, out=out)
        return out

In an isolated worker the array lives inside a *result region*, the shared memory the host maps and reads in place,
so returning it costs no copy at all on the result side (an ordinary result is copied once into such a region).
Anywhere else (an in-process session, plain Python) it is ``torch.empty`` / ``numpy.empty``, so the same function
works in every session kind.

Rules: the arrays of one call share one region (the first ``empty`` of a call reserves it, at least 1 MiB); an
``empty`` that no longer fits in it, an array that is sliced, transposed or converted (the export policy copies,
e.g. ``upcast``) before it is returned, or one returned from a later call, is copied like any other result. Keep no
reference to it in the worker after the call: once returned it belongs to the host (a kept one makes the worker
retire the region instead of reusing it).
"""

from . import dtypes as _dtypes

_allocator = None  # set by the isolated worker: (shape, numpy dtype) -> numpy.ndarray inside a result region


def _numpy_dtype(np, dtype):
    if isinstance(dtype, str):
        row = _dtypes.DTYPES.get(dtype[6:] if dtype.startswith("torch.") else dtype)
        if row is None or row[2] is None:
            raise TypeError("dtype %r has no NumPy equivalent in the dtype table" % dtype)
        return np.dtype(row[2])
    if type(dtype).__module__ == "torch":  # a torch.dtype: its name is "torch.float32"
        return _numpy_dtype(np, str(dtype))
    return np.dtype(dtype)


def empty(shape, dtype="float32", kind="tensor"):
    """An uninitialised array to fill and return; in an isolated worker, inside a result region (no copy out).

    ``dtype``: a name of the dtype table (``"float32"``), a ``numpy.dtype`` or a ``torch.dtype``. ``kind``:
    ``"tensor"`` (a ``torch.Tensor``, needs PyTorch) or ``"ndarray"``."""
    import numpy as np

    if kind not in ("tensor", "ndarray"):
        raise ValueError("kind must be 'tensor' or 'ndarray', got %r" % (kind,))
    shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) or hasattr(shape, "__len__") else (shape,)))
    if any(d < 0 for d in shape):
        raise ValueError("negative dimension in shape %r" % (shape,))
    np_dtype = _numpy_dtype(np, dtype)
    allocate = _allocator
    array = allocate(shape, np_dtype) if allocate is not None else None
    if array is None:
        array = np.empty(shape, np_dtype)
    if kind == "ndarray":
        return array
    import torch

    return torch.from_numpy(array)
