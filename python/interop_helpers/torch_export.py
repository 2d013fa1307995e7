"""The export policy: what happens to a ``torch.Tensor`` before its real ``Tensor.numpy()``.

``prepare(tensor, *, detach=True, upcast=False)`` returns a CPU tensor that ``.numpy()`` accepts, or raises one
of the ``ExportError`` subclasses below, whose names are stable: the .NET side maps each to a typed exception
(``Interop.Torch.TorchExport.Translate``), in-process and in the worker process alike.

The policy, in the order it is applied:

1. sparse, mkldnn, nested or quantized tensors: ``UnsupportedLayoutError`` naming the fix (``to_dense()``,
   ``dequantize()``); they have no strided memory to share.
2. ``meta`` tensors: ``UnsupportedDeviceError`` (they have no data at all).
3. ``requires_grad``: detached when ``detach`` is true (the default: the values are the same, only the autograd
   graph is left behind); ``RequiresGradError`` when it is false.
4. any non-CPU device (CUDA, MPS, XPU, ...): copied to the CPU with ``tensor.cpu()``.
5. conjugate and negative views (lazy ``conj()`` / negation bits): resolved (``resolve_conj``/``resolve_neg``,
   guarded by ``hasattr``), which copies.
6. dtypes NumPy lacks (bfloat16, complex32, float8 variants, bits types): ``UnsupportedDTypeError`` by default;
   with ``upcast=True`` the float ones are widened (bfloat16 and float8 to float32, complex32 to complex64), a copy.

A CPU, strided tensor of a NumPy dtype that does not require grad is returned as is (the same object), so its
``.numpy()`` shares the tensor's memory.

``Tensor.numpy(force=True)`` (PyTorch 1.13 and later) does steps 3-5 silently; this module does them
explicitly so that detaching is a choice and dtype problems get a clear message.
"""

import torch

from . import dtypes as _dtypes

__all__ = [
    "ExportError",
    "UnsupportedDTypeError",
    "UnsupportedLayoutError",
    "UnsupportedDeviceError",
    "RequiresGradError",
    "prepare",
    "export",
    "numpy_dtypes",
]


class ExportError(ValueError):
    """The base of every refusal of the export policy."""


class UnsupportedDTypeError(ExportError):
    """The tensor's dtype has no NumPy equivalent (and no upcast was requested or possible)."""


class UnsupportedLayoutError(ExportError):
    """The tensor is sparse, mkldnn, nested or quantized: it has no strided memory NumPy could share."""


class UnsupportedDeviceError(ExportError):
    """The tensor's device holds no data that can be copied to the CPU (the ``meta`` device)."""


class RequiresGradError(ExportError):
    """The tensor requires grad and the caller asked not to detach it."""


def _numpy_dtypes():
    # The dtype table (dtypes.py, checked against the .NET table) says which torch dtypes NumPy has.
    result = set()
    for _, _, _, numpy_name, torch_name, _ in _dtypes.rows():
        found = getattr(torch, torch_name.split(".", 1)[1], None)
        if numpy_name is not None and found is not None:
            result.add(found)
    return frozenset(result)


def _upcasts():
    table = {}
    for name in dir(torch):
        found = getattr(torch, name, None)
        if isinstance(found, torch.dtype) and name.startswith("float8"):
            table[found] = torch.float32
    table[torch.bfloat16] = torch.float32
    complex32 = getattr(torch, "complex32", None)
    if complex32 is not None:
        table[complex32] = torch.complex64
    return table


_NUMPY_DTYPES = _numpy_dtypes()
_UPCASTS = _upcasts()


def numpy_dtypes():
    """The torch dtypes that ``Tensor.numpy()`` exports in this PyTorch (uint16/32/64 only from 2.3 on)."""
    return _NUMPY_DTYPES


def prepare(tensor, *, detach=True, upcast=False):
    """Returns a CPU tensor ready for ``.numpy()`` (see the module's docstring), or raises an ``ExportError``."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"prepare expects a torch.Tensor, got {type(tensor).__module__}.{type(tensor).__qualname__}")
    if tensor.is_quantized:
        raise UnsupportedLayoutError(
            f"a quantized tensor ({tensor.dtype}) cannot be exported: NumPy has no quantized dtypes. "
            "Fix: call tensor.dequantize() in Python (gives float32), or return the int_repr() and the scale/zero point.")
    if tensor.layout != torch.strided or getattr(tensor, "is_nested", False):
        raise UnsupportedLayoutError(
            f"a tensor with layout {tensor.layout} cannot be exported: NumPy shares only strided (dense) memory. "
            "Fix: call tensor.to_dense() in Python first (for nested tensors: to_padded_tensor or unbind).")
    # is_meta / is_cpu instead of tensor.device.type: the per-call cost matters (a device object costs ~0.3 us).
    if tensor.is_meta:
        raise UnsupportedDeviceError(
            "a tensor on the 'meta' device has shapes but no data, so it cannot be exported. "
            "Fix: run the model on a real device (model.to('cpu') or a CUDA device) so that it produces data.")
    if tensor.requires_grad:
        if not detach:
            raise RequiresGradError(
                "the tensor requires grad and detaching was turned off (detach=False / ExportOptions.Detach = false). "
                "Fix: allow detaching, call tensor.detach() in Python, or run the call under torch.no_grad() / inference mode.")
        tensor = tensor.detach()
    if not tensor.is_cpu:
        tensor = tensor.cpu()
    if hasattr(tensor, "is_conj") and tensor.is_conj():
        tensor = tensor.resolve_conj()
    if hasattr(tensor, "is_neg") and tensor.is_neg():
        tensor = tensor.resolve_neg()
    if tensor.dtype not in _NUMPY_DTYPES:
        target = _UPCASTS.get(tensor.dtype)
        if target is None:
            raise UnsupportedDTypeError(
                f"{tensor.dtype} has no NumPy equivalent and no lossless widening (PyTorch {torch.__version__}). "
                "Fix: convert it in Python to a dtype NumPy has, e.g. tensor.to(torch.float32) or tensor.to(torch.int64).")
        if not upcast:
            raise UnsupportedDTypeError(
                f"{tensor.dtype} has no NumPy equivalent. Fix: opt in to widening it to {target} "
                "(upcast=True / ExportOptions.Upcast = true; a copy), or convert it in Python: tensor.to(" + str(target) + ").")
        tensor = tensor.to(target)
    return tensor


_Tensor = torch.Tensor
# What Tensor.numpy() raises for a tensor it cannot export as is (grad, device, layout, conj/neg bits, dtype).
_NUMPY_REFUSALS = (TypeError, RuntimeError, ValueError)


def export(tensor, *, detach=True, upcast=False):
    """``prepare(tensor, ...).numpy()``: an ndarray sharing the prepared tensor's memory.

    The common case first: a plain ``torch.Tensor`` of a NumPy dtype is handed to ``Tensor.numpy()`` directly, which
    itself refuses everything ``prepare`` would change or refuse (requires grad, not on the CPU, not strided, quantized,
    conjugate or negative bits, dtypes NumPy lacks); only when it refuses does the full policy run, which then fixes
    the tensor or raises the policy's error. So the result and the refusals are ``prepare``'s, for ~0.5 us less.
    """
    if tensor.__class__ is _Tensor and tensor.dtype in _NUMPY_DTYPES:
        try:
            return tensor.numpy()
        except _NUMPY_REFUSALS:
            pass
    return prepare(tensor, detach=detach, upcast=upcast).numpy()


def from_numpy_copy(array):
    """A tensor over a C-contiguous, native-byte-order *copy* of ``array`` (never shares memory).

    For callers who want a tensor even where ``torch.from_numpy`` refuses the array's layout (negative strides,
    non-native byte order, read-only memory). Dtypes PyTorch lacks are still refused by ``torch.from_numpy``.
    """
    import numpy as np

    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy_copy expects a numpy.ndarray, got {type(array).__module__}.{type(array).__qualname__}")
    return torch.from_numpy(np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True))
