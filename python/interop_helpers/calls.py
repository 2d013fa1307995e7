"""Calling Python objects on behalf of a .NET ``PythonSession`` (in-process or in a worker process).

``call`` runs the callee in the requested autograd mode and returns its result with every ``torch.Tensor``
(inside lists, tuples and dicts too) exported through ``torch_export.export``, so the .NET side only ever sees
NumPy arrays in native byte order, plain Python values and other objects. ``load_file`` runs a ``.py`` file as a
module named after the file, with the file's folder importable (see its docstring for reuse and reloading).
``exec_source``, ``exec_file`` and ``eval_source`` are the scripting entry points (both sessions call them
as ordinary functions, so arguments and results follow the one conversion contract).
"""

import builtins
import contextlib
import importlib.machinery
import importlib.util
import hashlib
import os
import sys
import threading
import types
from pathlib import Path

# The conversion limits of every session kind (src/Interop/Sessions/ConversionLimits.cs holds the same numbers; a test
# checks that they agree): results nested deeper, or arrays of more dimensions, are refused with a ValueError.
MAX_DEPTH = 32
MAX_RANK = 32

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


def call(fn, args=(), kwargs=None, grad_mode=GRAD_DEFAULT, detach=True, upcast=False, export=True):
    """``fn(*args, **kwargs)`` in ``grad_mode``, with tensors in the result exported (see the module docstring).

    ``export=False`` (only with the default grad mode) returns the result as is: the in-process session then exports
    a plain tensor itself (``Tensor.numpy()``, as ``torch_export.export``'s shortcut does) and hands anything else to
    ``export_tree``, so the result is the same."""
    if grad_mode == GRAD_DEFAULT:  # the common case without a context manager (~0.15 us per call)
        result = fn(*args, **kwargs) if kwargs else fn(*args)
        return export_tree(result, detach=detach, upcast=upcast) if export else result
    with grad_context(grad_mode):
        result = fn(*args, **(kwargs or {}))
        return export_tree(result, detach=detach, upcast=upcast)


def check_depth(depth):
    """Raises the ValueError of a result nested deeper than MAX_DEPTH (a self-referencing list ends here too)."""
    if depth > MAX_DEPTH:
        raise ValueError("the result is nested deeper than %d lists, tuples or dicts (or contains itself), the limit of "
                         "every session kind; return a flatter structure" % MAX_DEPTH)


def check_rank(ndim):
    """Raises the ValueError of a result array with more than MAX_RANK dimensions (NumPy 2 allows 64)."""
    if ndim > MAX_RANK:
        raise ValueError("the result is an array of %d dimensions; at most %d are supported by every session kind; "
                         "reshape it first" % (ndim, MAX_RANK))


def check_text(text):
    """``text`` if .NET can read it; a ValueError naming the string when it holds unpaired surrogates."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            clipped = repr(text)
            clipped = clipped if len(clipped) <= 80 else clipped[:77] + "..."
            raise ValueError("the result holds the string %s with unpaired surrogates (a name decoded with "
                             "surrogateescape?), which .NET cannot read; return os.fsencode(name) or fix the text"
                             % clipped) from None
    return text


# Results that export_tree returns unchanged (exact types: subclasses such as numpy.float64 or IntEnum take the full
# path), checked first: the common case costs one set lookup.
_PLAIN = frozenset((type(None), bool, int, float, complex, bytes))
_torch_export = None  # interop_helpers.torch_export once a tensor was exported (importing it imports torch)


def _exporter():
    global _torch_export
    if _torch_export is None:
        from . import torch_export

        _torch_export = torch_export
    return _torch_export


def export_tree(value, *, detach=True, upcast=False, _depth=0):
    """Replaces tensors by ``torch_export.export(tensor)`` in lists, tuples and dicts; big-endian arrays by native ones.
    Refuses (ValueError) structures nested deeper than MAX_DEPTH and arrays of more than MAX_RANK dimensions."""
    if _depth > MAX_DEPTH:
        check_depth(_depth)
    if type(value) in _PLAIN:
        return value
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        exporter = _torch_export or _exporter()
        ndim = value.dim()
        if ndim > MAX_RANK:
            check_rank(ndim)
        return exporter.export(value, detach=detach, upcast=upcast)
    if isinstance(value, str):
        return check_text(value)
    inner = _depth + 1
    if isinstance(value, (list, tuple)):
        items = (export_tree(v, detach=detach, upcast=upcast, _depth=inner) for v in value)
        return type(value)(items) if type(value) in (list, tuple) else tuple(items)
    if isinstance(value, dict):
        return {check_text(k) if isinstance(k, str) else k: export_tree(v, detach=detach, upcast=upcast, _depth=inner)
                for k, v in value.items()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            check_rank(value.ndim)
            if not value.dtype.isnative:
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


class Interrupted(BaseException):
    """Raised asynchronously into an in-process call that ran past its timeout or was cancelled.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that user code's ``except Exception`` does not swallow it."""


def _namespace(globals_, filename):
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    if filename is not None:
        namespace["__file__"] = filename
    if globals_:
        namespace.update(globals_)
    return namespace


def script_globals(namespace, given=None):
    """The globals a script left behind, as .NET reads them back: names that do not start with ``__``, that are not
    modules, and that the script bound itself (a name still bound to the very object passed in is left out: it was
    a copy of .NET's value anyway, and sending it back would copy a dataset twice)."""
    given = given or {}
    return {k: v for k, v in namespace.items()
            if not k.startswith("__") and not isinstance(v, types.ModuleType) and not (k in given and given[k] is v)}


def exec_source(source, globals_=None, filename="<script>"):
    """``exec(source)`` in a fresh ``__main__``-like namespace holding ``globals_``; returns ``script_globals``."""
    if not isinstance(source, str):
        raise TypeError("source must be a str, not %s" % type(source).__name__)
    given = dict(globals_ or {})
    namespace = _namespace(given, None if filename == "<script>" else filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - running the user's script is the point
    return script_globals(namespace, given)


def exec_file(path, globals_=None):
    """``exec_source`` of the file at ``path`` (tracebacks name the file and its lines)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no Python file at {path}")
    with open(path, "rb") as f:
        source = f.read().decode("utf-8")
    return exec_source(source, globals_, str(path))


def eval_source(expression, globals_=None):
    """``eval(expression)`` with ``globals_`` as its names."""
    if not isinstance(expression, str):
        raise TypeError("expression must be a str, not %s" % type(expression).__name__)
    return eval(compile(expression.strip(), "<expression>", "eval"), _namespace(globals_, None))  # noqa: S307


def get_attr(obj, name):
    """``getattr(obj, name)``, for reading an attribute as a value."""
    return getattr(obj, name)


def set_attr(obj, name, value):
    """``setattr(obj, name, value)``."""
    setattr(obj, name, value)


# ---- output routing (in-process sessions with PythonSession.Output set) -----------------------------------------------

_output = threading.local()


class _Route:
    """Stands in for sys.stdout / sys.stderr: writes go to the sink of the call running on this thread, if any,
    else to the stream it replaced (the process's console). Everything else is the original stream's."""

    def __init__(self, original):
        self._original = original

    def write(self, text):
        sink = getattr(_output, "sink", None)
        if sink is not None:
            sink(str(text))
            return len(text)
        return self._original.write(text) if self._original is not None else len(text)

    def flush(self):
        if getattr(_output, "sink", None) is None and self._original is not None:
            self._original.flush()

    def __getattr__(self, name):
        return getattr(self._original, name)


def install_output_routes():
    """Replaces sys.stdout and sys.stderr by routes (once; harmless when called again)."""
    if not isinstance(sys.stdout, _Route):
        sys.stdout = _Route(sys.stdout)
    if not isinstance(sys.stderr, _Route):
        sys.stderr = _Route(sys.stderr)


def call_with_output(sink, fn, args=(), kwargs=None, grad_mode=GRAD_DEFAULT, detach=True, upcast=False):
    """``call`` with this thread's print() and sys.stderr output sent to ``sink(text)`` (threads the callee starts
    write to the console)."""
    install_output_routes()
    previous = getattr(_output, "sink", None)
    _output.sink = sink
    try:
        return call(fn, args, kwargs, grad_mode, detach, upcast)
    finally:
        _output.sink = previous
