"""A small, deterministic network for the .NET examples and tests.

``build(seed=0)`` returns a ``TinyNet`` whose weights come from ``torch.manual_seed(seed)``-style generation on the
CPU, so the same seed gives the same weights in any process; ``reference(x, seed=0)`` runs it in Python for comparison.
"""

import torch
from torch import nn

IN_FEATURES = 4
HIDDEN = 8
OUT_FEATURES = 3


class TinyNet(nn.Module):
    """Linear(4, 8) -> tanh -> Linear(8, 3), plus a softmax head on request."""

    def __init__(self, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.hidden = nn.Linear(IN_FEATURES, HIDDEN)
        self.out = nn.Linear(HIDDEN, OUT_FEATURES)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x, probabilities=False):
        y = self.out(torch.tanh(self.hidden(x)))
        return torch.softmax(y, dim=-1) if probabilities else y


def build(seed=0):
    """A TinyNet in eval mode."""
    return TinyNet(seed).eval()


def reference(x, seed=0, probabilities=False):
    """The network's output for ``x`` (anything ``torch.as_tensor`` accepts), computed here in Python."""
    with torch.no_grad():
        return build(seed)(torch.as_tensor(x, dtype=torch.float32), probabilities=probabilities)


def describe(x):
    """A mixed result (tuple, dict, scalars, string), for the conversion tests."""
    t = torch.as_tensor(x)
    return (t.sum().item(), int(t.numel()), {"shape": list(t.shape), "name": "describe", "ok": True, "none": None}, t * 2)
