"""Hands Python warnings raised inside Interop's library calls to .NET (``Interop.Diagnostics.PythonWarnings``).

``install(sink)`` wraps ``warnings.showwarning`` once per interpreter. Python's warning filters still decide which
warnings are shown (by default each warning once per code location; ``warnings.simplefilter("always")`` shows every
one; an ``"error"`` filter turns them into exceptions). A shown warning is offered to ``sink(category, message,
filename, lineno)``; when the sink returns True (a .NET library call is running on this thread and a .NET handler
took it) nothing is printed, otherwise the previous ``showwarning`` prints it as before (to ``sys.stderr``).
The sink is dropped at interpreter exit (an ``atexit`` handler), so warnings raised while Python and .NET shut down
never call into a runtime that is going away.
"""

import atexit
import warnings

_state = {"sink": None}


def install(sink):
    """Routes shown warnings through ``sink`` (see the module docstring); later calls only replace the sink."""
    _state["sink"] = sink
    current = warnings.showwarning
    if getattr(current, "_interop_bridge", False):
        return
    previous = current

    def showwarning(message, category, filename, lineno, file=None, line=None):
        target = _state["sink"]
        if file is None and target is not None:
            name = category.__qualname__ if category.__module__ == "builtins" else f"{category.__module__}.{category.__qualname__}"
            if target(name, str(message), str(filename), int(lineno or 0)):
                return
        previous(message, category, filename, lineno, file, line)

    showwarning._interop_bridge = True
    warnings.showwarning = showwarning
    atexit.register(_detach)


def _detach():
    _state["sink"] = None
