"""Calling Python objects on behalf of a .NET ``PythonSession`` (in-process or in a worker process).

``call`` runs the callee in the requested autograd mode and returns its result with every ``torch.Tensor``
(inside lists, tuples and dicts too) exported through ``torch_export.export``, so the .NET side only ever sees
NumPy arrays in native byte order, plain Python values and other objects. ``load_file`` runs a ``.py`` file as a
module named after the file, with the file's folder importable (see its docstring for reuse and reloading).
"""

import contextlib
import importlib.machinery
import importlib.util
import hashlib
import os
import sys
from pathlib import Path

GRAD_DEFAULT = 0
NO_GRAD = 1
INFERENCE_MODE = 2

# load_file's modules by resolved path: (module name, (mtime_ns, size) of the file when it ran).
_loaded = {}


def grad_context(mode):
    """The context manager for a grad mode (0: none, 1: torch.no_grad(), 2: torch.inference_mode())."""
    if mode == GRAD_DEFAULT:
        return contextlib.nullcontext()
    import torch

    if mode == NO_GRAD:
        return torch.no_grad()
    if mode == INFERENCE_MODE:
        return torch.inference_mode()
    raise ValueError(f"unknown grad mode {mode!r}: expected 0 (default), 1 (no_grad) or 2 (inference_mode)")


def call(fn, args=(), kwargs=None, grad_mode=GRAD_DEFAULT, detach=True, upcast=False):
    """``fn(*args, **kwargs)`` in ``grad_mode``, with tensors in the result exported (see the module docstring)."""
    with grad_context(grad_mode):
        result = fn(*args, **(kwargs or {}))
        return export_tree(result, detach=detach, upcast=upcast)


def export_tree(value, *, detach=True, upcast=False):
    """Replaces tensors by ``torch_export.export(tensor)`` in lists, tuples and dicts; big-endian arrays by native ones."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        from . import torch_export

        return torch_export.export(value, detach=detach, upcast=upcast)
    if isinstance(value, (list, tuple)):
        return type(value)(export_tree(v, detach=detach, upcast=upcast) for v in value) if type(value) in (list, tuple) \
            else tuple(export_tree(v, detach=detach, upcast=upcast) for v in value)
    if isinstance(value, dict):
        return {k: export_tree(v, detach=detach, upcast=upcast) for k, v in value.items()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray) and not value.dtype.isnative:
            return native_order(value)
        if isinstance(value, numpy.generic):
            return value.item()
    return value


def native_order(array):
    """A copy of a big-endian ``array`` in native byte order; numeric dtypes come out built in (``np.float32``, not a
    derived ``dtype('float32')`` that ``isbuiltin`` rejects), other dtypes (records, datetimes) keep their structure."""
    numpy = sys.modules["numpy"]
    dtype = array.dtype.newbyteorder("=")
    if dtype.kind in "biufc":
        dtype = numpy.dtype(dtype.str)
    return array.astype(dtype)


def load_file(path):
    """The module of the Python file at ``path``, as ``PythonSession.LoadFile`` gives it.

    - The module is named after the file (``tiny_net`` for ``tiny_net.py``), so tracebacks, reprs and pickles name it
      as Python would; when that name is taken by another module (``json.py`` beside the stdlib's ``json``), it is
      ``<stem>_<8 hex digits of the path's hash>``.
    - The file's folder goes to the front of ``sys.path`` (as for a script run with ``python file.py``), so the
      file can import its sibling modules.
    - Loading the same path again returns the same module, without running it again; if the file changed since
      (modification time or size), it runs again under the same name, replacing the entry in ``sys.modules``. So
      repeated loads never accumulate modules. A file that raises while running leaves no module behind.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no Python file at {path}")
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    key = str(path)
    known = _loaded.get(key)
    if known is not None:
        name, known_stamp = known
        module = sys.modules.get(name)
        if module is not None and known_stamp == stamp:
            return module
    else:
        name = _module_name(path)
    # An explicit source loader: spec_from_file_location alone gives None for names without a .py suffix (a script
    # called "model"), which surfaced as "'NoneType' object has no attribute 'loader'".
    spec = importlib.util.spec_from_file_location(name, path, loader=importlib.machinery.SourceFileLoader(name, key))
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous
        raise
    _loaded[key] = (name, stamp)
    return module


def _module_name(path):
    stem = path.stem if path.stem.isidentifier() else "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
    if not stem or stem[0].isdigit():
        stem = "_" + stem
    existing = sys.modules.get(stem)
    if existing is None:
        return stem
    origin = getattr(existing, "__file__", None)
    if origin is not None and os.path.realpath(origin) == str(path):
        # The file was already imported as a sibling module (``import helpers``): the same module, named the same.
        return stem
    return "%s_%s" % (stem, hashlib.sha256(str(path).encode()).hexdigest()[:8])
