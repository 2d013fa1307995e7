"""The seed demo's last step, run in an isolated worker process (see src/Interop.Cli/SeedChain.cs).

The argument arrives as a ``torch.Tensor`` that the worker made with ``torch.from_numpy`` over an ndarray viewing the
shared-memory region the .NET host wrote; the result leaves through the export policy and ``Tensor.numpy()`` into a
result region, which the host reads in place (a TorchSharp tensor over the mapping).
"""

import torch


def compute(x):
    """softmax(x xᵀ / 10) row by row: the same formula the host evaluates with TorchSharp."""
    return torch.softmax(x @ x.T / 10.0, dim=1)


def versions():
    """This interpreter's torch version (the host never imports Python torch)."""
    return torch.__version__
