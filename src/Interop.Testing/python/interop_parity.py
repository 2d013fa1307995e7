"""PyTorch side of Interop.Testing's op-parity harness (runs in the session's Python, usually an isolated worker).

`run(source, layout, *inputs)` evaluates `source` (a Python expression giving a callable, e.g.
"lambda x, w: F.linear(x, w)") with `torch` and `F` (torch.nn.functional) in scope, re-creates the requested memory
layout for floating inputs (arguments arrive C-contiguous), calls it and returns the result tensor, detached.
"""
import torch
import torch.nn.functional as F

_compiled = {}


def _layout(t, layout):
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or layout == "contiguous":
        return t
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    # every other element of a buffer twice as long (rank 1, or the fallback)
    flat = torch.empty(t.numel() * 2, dtype=t.dtype)
    view = flat[::2]
    view.copy_(t.reshape(-1))
    return torch.as_strided(flat, t.shape, [s * 2 for s in t.contiguous().stride()])


def version():
    return torch.__version__


def run(source, layout, *inputs):
    fn = _compiled.get(source)
    if fn is None:
        fn = eval(source, {"torch": torch, "F": F})
        _compiled[source] = fn
    args = [_layout(t, layout) for t in inputs]
    with torch.no_grad():
        out = fn(*args)
    return out.detach().contiguous()
