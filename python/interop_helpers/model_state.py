"""Model weights between PyTorch and .NET (the Python side of Interop.TorchSharp's ``ModelWeights``).

The .NET side moves a ``state_dict`` in batches, so that the extra memory is bounded by the batch, not the model:

- ``open_source(obj)`` takes an ``nn.Module`` (its ``state_dict()``: parameters and persistent buffers, BatchNorm
  running statistics and ``num_batches_tracked`` included), a mapping of names to tensors, or a checkpoint path that
  ``torch.load`` reads (``weights_only=True``; memory-mapped where this PyTorch can, so a multi-GB file is not read
  into memory at once). It returns a ``StateSource`` that stays in this process (an object handle for .NET).
- ``describe(state)`` lists ``[name, dtype, shape, nbytes]`` for every entry (dtype: the dtype table's name);
  ``describe_json(state)`` is the same as one JSON text (what .NET asks for: one value to carry, not four per entry);
  ``open_described(obj)`` is ``[open_source(obj), describe_json(...), places]`` in one call, ``places`` giving the
  address of every entry that is already a contiguous CPU tensor (for the one-copy route, see ``pin_batch``).
- ``read_batch(state, indices)`` returns the entries at ``indices`` as **raw bytes**: 1-d uint8
  tensors over each tensor's C-order memory (no copy when it is already contiguous). Every dtype travels the same way,
  so bfloat16, which NumPy lacks, is carried bit for bit with its dtype tag from ``describe`` and never upcast.
- ``pin_batch(state, indices)`` is the one-copy route of an isolated session: it returns ``[address, nbytes]`` (JSON text) of each
  entry's C-order CPU memory (the tensor itself when it is already a contiguous CPU tensor, else a contiguous copy) and
  keeps those tensors alive in ``state`` until the next ``pin_batch`` or until ``state`` is released; the host reads the
  bytes straight into its own tensors (``process_vm_readv``) while it holds this worker, and checks every address and
  size it is told against the shapes and dtypes it already knows.
- ``open_target(obj)`` (``open_target_described(obj)``: with its ``describe_json`` and places in the same call) /
  ``write_batch(target, names, dtypes, shapes, blobs)`` do the other direction: each blob
  (uint8 bytes from .NET) is viewed as its dtype and shape and copied into the module's parameter or buffer under
  ``torch.no_grad()``. The one-copy route of an isolated session: ``pin_targets(target, names, dtypes, shapes)`` checks
  the entries as ``write_batch`` does and returns ``[address, nbytes]`` (JSON text) of each destination's memory (the
  tensor itself when it is a contiguous CPU tensor of that dtype, else a staging tensor); the host writes the bytes there
  (``process_vm_writev``) while it holds this worker, then ``commit_batch(target)`` copies the staged entries in and
  bumps the version counter of the ones written in place (as ``copy_`` would).

Checks of names, shapes and dtypes (PyTorch's ``load_state_dict`` rules) are made on the .NET side from
``describe``; ``write_batch`` checks again before copying so that a mismatch can never write out of bounds.
"""

import json
import os
import sys

import torch

from . import dtypes as _dtypes

__all__ = ["StateSource", "StateTarget", "open_source", "open_target", "describe", "read_batch", "pin_batch", "write_batch",
           "describe_json", "open_described", "open_target_described", "pin_targets", "commit_batch"]

_NAME_BY_TORCH = {}
for _name, _kind, _size, _numpy, _torch_name, _code in _dtypes.rows():
    _found = getattr(torch, _torch_name.split(".", 1)[1], None)
    if _found is not None:
        _NAME_BY_TORCH[_found] = _name
_TORCH_BY_NAME = {name: dtype for dtype, name in _NAME_BY_TORCH.items()}

# Keys under which common checkpoint layouts nest the state dict (Lightning, training scripts).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def _dtype_name(name, tensor):
    found = _NAME_BY_TORCH.get(tensor.dtype)
    if found is None:
        raise TypeError(f"state entry '{name}' has dtype {tensor.dtype}, which has no row in Interop's dtype table "
                        "(quantized and float8 types are not carried). Fix: convert it in Python first, e.g. "
                        "tensor.dequantize() or tensor.to(torch.float32).")
    return found


def _entries(mapping, what, detach=True):
    entries = []
    append = entries.append
    strided = torch.strided
    names = _NAME_BY_TORCH
    for name, value in mapping.items():
        if not isinstance(name, str):
            raise TypeError(f"{what} has a key of type {type(name).__name__}; state dict keys are strings")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{what}: entry '{name}' is a {type(value).__module__}.{type(value).__qualname__}, not a tensor. "
                            "Fix: pass the state dict itself (for a checkpoint with metadata, the entry that holds the weights).")
        if value.layout != strided or value.is_quantized:
            raise TypeError(f"{what}: entry '{name}' has layout {value.layout} (quantized: {value.is_quantized}); "
                            "only dense tensors are carried. Fix: to_dense() / dequantize() first.")
        if value.is_meta:
            raise TypeError(f"{what}: entry '{name}' is on the 'meta' device and has no data. Fix: materialise the model first.")
        if value.dtype not in names:
            _dtype_name(name, value)  # raises, naming the entry
        append((name, value.detach() if detach and value.requires_grad else value))
    return entries


class StateSource:
    """The entries (name, tensor) of a state dict, in PyTorch's order, kept in this process between batches."""

    def __init__(self, entries, keep=None):
        self.entries = entries
        self.pinned = None  # pin_batch's tensors, alive while the host reads them
        self._keep = keep  # what the tensors came from (an mmap'd checkpoint stays open while this lives)

    def __len__(self):
        return len(self.entries)


class StateTarget(StateSource):
    """The tensors of a module's (or mapping's) state dict that ``write_batch`` copies into."""


def _load_checkpoint(path):
    kwargs = {"map_location": "cpu", "weights_only": True}
    try:
        loaded = torch.load(path, mmap=True, **kwargs)  # PyTorch 2.1+: tensors stay in the page cache until read
    except TypeError:
        loaded = torch.load(path, **kwargs)  # older PyTorch: no mmap keyword
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        loaded = torch.load(path, **kwargs)  # a legacy (non-zip) file cannot be memory-mapped
    return loaded


def _mapping_of(obj, what, keep_vars=False):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict(keep_vars=keep_vars)
    if hasattr(obj, "items") and hasattr(obj, "keys"):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in _NESTED_KEYS:
            nested = obj.get(key) if hasattr(obj, "get") else None
            if nested is not None and (isinstance(nested, torch.nn.Module) or hasattr(nested, "items")):
                return _mapping_of(nested, f"{what}['{key}']", keep_vars)
        return obj  # empty, or _entries names the first entry that is not a tensor
    raise TypeError(f"{what} is a {type(obj).__module__}.{type(obj).__qualname__}: expected an nn.Module, a mapping of names "
                    "to tensors (a state_dict), or a checkpoint path that torch.load reads")


def open_source(obj, detach=True):
    """A ``StateSource`` over an nn.Module, a state-dict mapping, or a checkpoint file (str or os.PathLike).

    ``detach=False`` keeps the tensors as the module holds them (parameters that require grad included): cheaper, for
    callers that only read their memory (``open_described``); ``read_batch`` and ``pin_batch`` detach what they hand out.
    """
    keep = None
    what = "the source"
    if isinstance(obj, (str, os.PathLike)):
        what = f"checkpoint '{os.fspath(obj)}'"
        obj = keep = _load_checkpoint(obj)
    return StateSource(_entries(_mapping_of(obj, what, keep_vars=not detach), what, detach), keep)


def _is_plain(tensor):
    return tensor.is_cpu and tensor.is_contiguous() and not tensor.is_conj() and not tensor.is_neg()


def open_described(obj, huge_pages=False):
    """``[state, describe_json(state), places]`` for ``state = open_source(obj)``: one call instead of two or more.

    ``places`` (JSON text) has one item per entry: ``[address, nbytes]`` of its memory when the tensor already is a
    contiguous CPU tensor (valid while ``state`` lives: the state holds the tensor), else ``null`` (``pin_batch`` makes
    a C-order copy when the host asks). For a host that reads this process's memory directly.

    ``huge_pages``: the host reads the places with ``process_vm_readv``, which is about twice as fast from memory backed
    by huge pages; a range described a second time is collapsed into huge pages (see ``_HugePages``).
    """
    state = open_source(obj, detach=False)
    names = _NAME_BY_TORCH
    rows, places = [], []
    for name, t in state.entries:
        n = t.numel() * t.element_size()
        rows.append([name, names[t.dtype], list(t.shape), n])
        places.append([t.data_ptr() if n else 0, n] if _is_plain(t) else None)
    if huge_pages and state._keep is None:  # not for a checkpoint: its tensors may lie in a file mapping
        _HUGE_PAGES.collapse_repeated(p for p in places if p is not None)
    return [state, json.dumps(rows, separators=(",", ":")), json.dumps(places, separators=(",", ":"))]


class _HugePages:
    """Asks the kernel to back the memory of tensors that the host copies repeatedly with huge pages (Linux 6.1+:
    ``madvise(MADV_COLLAPSE)``).

    ``process_vm_readv`` / ``process_vm_writev`` pin the remote pages one at a time: from 4 KiB pages they copy at about
    half a memcpy's speed, from 2 MiB pages at about a memcpy's. Collapsing costs a copy inside this process (and
    possibly compaction), so it is done only for a range described a second time (a model whose weights go back and
    forth), once per range, and only for the 2 MiB-aligned part that lies wholly inside the tensors' own bytes. Ranges
    less than a page apart are taken as one (small tensors allocated one after the other: the gap holds no whole page,
    so no page that was not resident is made so). The contents and addresses stay as they are; failures (an older
    kernel, no free huge page, memory of a file mapping) are ignored and the copy takes its usual speed; after a few
    failures in a row the collapses stop, unless one has worked in this process (a probe on memory of its own, at the
    first use), so ranges that cannot be collapsed do not turn them off for later models.

    Only for transfers of at most ``MAX_BYTES`` in all: collapsing runs at a fraction of a memcpy's speed (compaction),
    so for a large model the one-time cost would take many transfers to win back, and there the host's parallel reads
    already come near a memcpy; for a small model the fixed cost per page is what matters.
    """

    SIZE = 2 << 20
    MADV_COLLAPSE = 25
    LIMIT = 1 << 16
    MAX_BYTES = 256 << 20
    PROBES = 4  # probes after a passing shortage (EAGAIN, ENOMEM) before the collapses stay off

    def __init__(self):
        self._seen = {}  # (address, nbytes) -> True once collapsed (or tried)
        self._madvise = None
        self._failures = 0
        # True once a collapse succeeded (the kernel has MADV_COLLAPSE): from then on a failure is about its range
        # (memory of a file mapping, e.g. torch.load(mmap=True) or a numpy memmap: EINVAL; no free huge page at the
        # moment), so it no longer stops the collapses of later ranges.
        self._worked = False
        self._probes = 0

    def _call(self):
        """madvise once the probe has worked; a falsy value while it has not (None: probe again at the next use)."""
        if self._madvise is None:
            self._madvise = False
            if sys.platform.startswith("linux"):
                try:
                    import ctypes
                    import errno

                    libc = ctypes.CDLL(None, use_errno=True)
                    madvise = libc.madvise
                    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                    madvise.restype = ctypes.c_int
                    worked, error = self._probe(madvise)
                    if worked:
                        self._madvise = madvise
                        self._worked = True
                    elif error in (errno.EAGAIN, errno.ENOMEM) and self._probes < self.PROBES:
                        # No huge page to be had at this moment (fragmented or busy memory): a shortage, not a kernel
                        # without MADV_COLLAPSE, so it must not turn the collapses off for the worker's life.
                        self._probes += 1
                        self._madvise = None
                except (OSError, AttributeError):
                    pass
        return self._madvise

    def _probe(self, madvise):
        """Whether the kernel collapses memory of this process's own (anonymous, private): one 2 MiB page, and the
        errno when it does not (None: the probe itself failed). Without it, the first failures could come from ranges
        that cannot be collapsed (a file mapping) and would be taken for a kernel without MADV_COLLAPSE."""
        import ctypes
        import mmap

        size = self.SIZE
        try:
            block = mmap.mmap(-1, 2 * size, flags=mmap.MAP_PRIVATE)  # anonymous, private (-1 alone: shared memory)
            try:
                view = (ctypes.c_char * (2 * size)).from_buffer(block)
                try:
                    start = (ctypes.addressof(view) + size - 1) & ~(size - 1)
                    ctypes.memset(start, 1, size)  # resident, so there is something to collapse
                    if madvise(start, size, self.MADV_COLLAPSE) == 0:
                        return True, 0
                    return False, ctypes.get_errno()
                finally:
                    del view
            finally:
                block.close()
        except Exception:  # noqa: BLE001 - no huge pages then, never a failed transfer
            return False, None

    @staticmethod
    def _merged(places):
        merged = []
        for address, nbytes in sorted((a, n) for a, n in places if n > 0):
            if merged:
                start, length = merged[-1]
                end = start + length
                if end <= address < end + _PAGE:
                    merged[-1] = (start, address + nbytes - start)
                    continue
                if address < end:  # overlapping ranges (views of one storage): the union
                    merged[-1] = (start, max(end, address + nbytes) - start)
                    continue
            merged.append((address, nbytes))
        return merged

    def collapse_repeated(self, places):
        size = self.SIZE
        seen = self._seen
        todo = []
        merged = self._merged(places)
        if sum(nbytes for _, nbytes in merged) > self.MAX_BYTES:
            return
        for address, nbytes in merged:
            if nbytes < size:
                continue
            start = (address + size - 1) & ~(size - 1)
            end = (address + nbytes) & ~(size - 1)
            if end <= start:
                continue
            key = (address, nbytes)
            done = seen.get(key)
            if done is None:
                if len(seen) >= self.LIMIT:
                    seen.clear()
                seen[key] = False
            elif not done:
                seen[key] = True
                todo.append((start, end - start))
        if not todo or self._failures >= 4:
            return
        madvise = self._call()
        if not madvise:
            return
        for start, length in todo:
            if madvise(start, length, self.MADV_COLLAPSE) == 0:
                self._failures = 0
                self._worked = True
            elif not self._worked:
                self._failures += 1  # never worked here: an older kernel (EINVAL) or no huge pages to be had: stop after a few
                if self._failures >= 4:
                    return


_PAGE = 4096
_HUGE_PAGES = _HugePages()


def open_target(obj):
    """A ``StateTarget`` over the tensors of an nn.Module's state dict (sharing their storage) or a mapping of tensors."""
    if isinstance(obj, torch.nn.Module):
        mapping = obj.state_dict(keep_vars=True)  # the Parameter and buffer objects themselves
    elif hasattr(obj, "items"):
        mapping = obj
    else:
        raise TypeError(f"the target is a {type(obj).__module__}.{type(obj).__qualname__}: expected an nn.Module or a "
                        "mapping of names to tensors")
    return StateTarget(_entries(mapping, "the target"), obj)


def open_target_described(obj, huge_pages=False):
    """``[target, describe_json(target), places]`` for ``target = open_target(obj)``: one call instead of two or more.

    ``places`` (JSON text) as in ``open_described``: ``[address, nbytes]`` of each entry that is a contiguous CPU tensor
    (the host may write an entry of the same dtype there, then names it to ``commit_batch``), else ``null`` (the host
    asks ``pin_targets``). ``huge_pages`` as in ``open_described``.
    """
    target = open_target(obj)
    places = []
    for _, t in target.entries:
        n = t.numel() * t.element_size()
        places.append([t.data_ptr() if n else 0, n] if _is_plain(t) else None)
    if huge_pages:
        _HUGE_PAGES.collapse_repeated(p for p in places if p is not None)
    return [target, describe_json(target), json.dumps(places, separators=(",", ":"))]


def describe(state):
    """``[[name, dtype name, shape, nbytes], ...]`` for every entry, in order."""
    return [[name, _dtype_name(name, t), list(t.shape), t.numel() * t.element_size()] for name, t in state.entries]


def describe_json(state):
    """``describe(state)`` as one JSON text."""
    return json.dumps(describe(state), separators=(",", ":"))


def _plain(tensor):
    """The tensor's values in C-order CPU memory: itself when it already is, else a copy (conjugate and negative views
    resolved, so the bytes are the values)."""
    if tensor.requires_grad:
        tensor = tensor.detach()
    if _is_plain(tensor):
        return tensor
    if not tensor.is_cpu:
        tensor = tensor.cpu()
    return tensor.resolve_conj().resolve_neg().contiguous()


def _raw_bytes(tensor):
    return _plain(tensor).reshape(-1).view(torch.uint8)


def _check_indices(state, indices):
    count = len(state.entries)
    for i in indices:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < count:
            raise IndexError(f"entry {i!r} asked for, the state has {count} entries")


def read_batch(state, indices):
    """The raw bytes (1-d uint8 tensors, C order) of the entries at ``indices`` (positions in ``describe``'s list)."""
    _check_indices(state, indices)
    return [_raw_bytes(state.entries[i][1]) for i in indices]


def pin_batch(state, indices):
    """``[[address, nbytes], ...]`` (as JSON text) of the entries at ``indices``: C-order CPU memory that stays valid (the tensors are kept
    in ``state``) until the next ``pin_batch`` on ``state`` or until ``state`` is released. The previous batch is released
    first, so at most one batch of copies (of non-contiguous or non-CPU entries) is alive."""
    _check_indices(state, indices)
    state.pinned = None
    pinned = [_plain(state.entries[i][1]) for i in indices]
    state.pinned = pinned
    return json.dumps([[t.data_ptr() if t.numel() else 0, t.numel() * t.element_size()] for t in pinned], separators=(",", ":"))


def _checked_destination(by_name, name, dtype_name, shape, convert):
    dest = by_name.get(name)
    if dest is None:
        raise KeyError(f"the target has no entry '{name}'")
    dtype = _TORCH_BY_NAME.get(dtype_name)
    if dtype is None:
        raise ValueError(f"unknown dtype '{dtype_name}'")
    if list(dest.shape) != list(shape) or (dest.dtype != dtype and not convert):
        raise ValueError(f"entry '{name}': the target is {dest.dtype} {list(dest.shape)}, the data {dtype} {list(shape)}")
    return dest, dtype


def pin_targets(target, names, dtypes, shapes, convert=False):
    """``[[address, nbytes], ...]`` (JSON text) where the host writes each entry's C-order bytes: the destination tensor's
    own memory when it is a contiguous CPU tensor of that dtype (no conjugate or negative view), else a staging tensor
    that ``commit_batch`` copies in. Entries are checked as in ``write_batch`` first (nothing is pinned on a mismatch).
    The previous batch's staging is dropped."""
    if not (len(names) == len(dtypes) == len(shapes)):
        raise ValueError("pin_targets needs as many names, dtypes and shapes")
    target.pinned = None
    by_name = dict(target.entries)
    checked = [_checked_destination(by_name, n, d, s, convert) for n, d, s in zip(names, dtypes, shapes)]
    pinned, rows = [], []
    for (dest, dtype), shape in zip(checked, shapes):
        direct = dest.dtype == dtype and _is_plain(dest)
        memory = dest if direct else torch.empty(list(shape), dtype=dtype)
        pinned.append((dest, None if direct else memory))
        rows.append([memory.data_ptr() if memory.numel() else 0, memory.numel() * memory.element_size()])
    target.pinned = pinned
    return json.dumps(rows, separators=(",", ":"))


def commit_batch(target, written=()):
    """After the host wrote a batch: staged entries (``pin_targets``) are copied into their destinations (``copy_`` under
    ``torch.no_grad()``, converting if asked), and the version counter of the entries written in place (those of
    ``pin_targets`` that needed no staging, and the entries at ``written``: positions in ``describe``'s list, written at
    the addresses ``open_target_described`` gave) is bumped, so autograd sees them as modified in place, as after
    ``copy_``."""
    _check_indices(target, written)
    pinned, target.pinned = target.pinned or [], None
    bump = getattr(getattr(torch.autograd, "graph", None), "increment_version", None)  # PyTorch 2.1+
    with torch.no_grad():
        for dest, staging in pinned:
            if staging is not None:
                dest.copy_(staging)
            elif bump is not None:
                bump(dest)
    if bump is not None:
        entries = target.entries
        for i in written:
            bump(entries[i][1])


def write_batch(target, names, dtypes, shapes, blobs, convert=False):
    """Copies each blob (uint8 bytes of dtype ``dtypes[i]`` and shape ``shapes[i]``) into the target's entry ``names[i]``.

    A dtype that differs from the entry's is refused unless ``convert`` (then ``copy_`` converts, as PyTorch's
    ``load_state_dict`` does).
    """
    if not (len(names) == len(dtypes) == len(shapes) == len(blobs)):
        raise ValueError("write_batch needs as many names, dtypes, shapes and blobs")
    by_name = dict(target.entries)
    with torch.no_grad():
        for name, dtype_name, shape, blob in zip(names, dtypes, shapes, blobs):
            dest, dtype = _checked_destination(by_name, name, dtype_name, shape, convert)
            if not isinstance(blob, torch.Tensor):
                blob = torch.from_numpy(blob)
            expected = dest.numel() * torch.empty((), dtype=dtype).element_size()
            if blob.dtype != torch.uint8 or blob.dim() != 1 or blob.numel() != expected:
                raise ValueError(f"entry '{name}': expected {expected} bytes as a 1-d uint8 tensor, got {blob.dtype} {list(blob.shape)}")
            dest.copy_(blob.view(dtype).reshape(shape))
