"""The example network is deterministic: the same seed gives the same weights and outputs in fresh modules."""
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_examples import tiny_net  # noqa: E402


def test_same_seed_same_output_other_seed_other_output():
    x = torch.linspace(-1, 1, 8).reshape(2, 4)
    a = tiny_net.reference(x)
    assert a.shape == (2, 3)
    assert torch.equal(a, tiny_net.build(0)(x).detach())
    assert not torch.equal(a, tiny_net.reference(x, seed=1))


def test_probabilities_sum_to_one():
    p = tiny_net.reference(torch.ones(5, 4), probabilities=True)
    assert torch.allclose(p.sum(dim=-1), torch.ones(5))
