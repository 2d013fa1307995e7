"""The Python side of model-weight transfer (interop_helpers.model_state): sources, raw bytes, write-back."""

import pytest

torch = pytest.importorskip("torch")

from interop_helpers import model_state  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.complex64]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 2))


def test_a_module_lists_parameters_and_buffers_in_pytorch_order():
    net = _net()
    state = model_state.open_source(net)
    rows = model_state.describe(state)
    assert [r[0] for r in rows] == list(net.state_dict().keys())
    assert "1.num_batches_tracked" in [r[0] for r in rows]
    row = dict((r[0], r) for r in rows)["1.num_batches_tracked"]
    assert row[1:] == ["int64", [], 8]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_raw_bytes_carry_every_dtype_bit_for_bit(dtype):
    source = (torch.randn(3, 5, dtype=torch.float64) * 100).to(dtype)
    state = model_state.open_source({"w": source.t()})  # non-contiguous: made contiguous (C order)
    blob, = model_state.read_batch(state, [0])
    assert blob.dtype == torch.uint8 and blob.dim() == 1
    back = blob.view(dtype).reshape(5, 3)
    assert torch.equal(back.view(torch.uint8), source.t().contiguous().view(torch.uint8))
    target = {"w": torch.zeros(5, 3, dtype=dtype)}
    model_state.write_batch(model_state.open_target(target), ["w"], [model_state.describe(state)[0][1]], [[5, 3]], [blob])
    assert torch.equal(target["w"].view(torch.uint8), source.t().contiguous().view(torch.uint8))


def test_write_back_reaches_the_modules_parameters_and_buffers():
    source, target = _net(), _net()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1)
        source[1].running_mean.fill_(3)
        source[1].num_batches_tracked.fill_(7)
    state = model_state.open_source(source)
    rows = model_state.describe(state)
    blobs = model_state.read_batch(state, list(range(len(rows))))
    model_state.write_batch(model_state.open_target(target), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], blobs)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_a_checkpoint_file_and_a_nested_checkpoint_are_read(tmp_path):
    net = _net()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, path)
    rows = model_state.describe(model_state.open_source(str(path)))
    assert [r[0] for r in rows] == list(net.state_dict().keys())


def test_refusals_name_the_problem():
    with pytest.raises(TypeError, match="'epoch'"):
        model_state.open_source({"epoch": 3, "w": torch.zeros(1)})
    with pytest.raises(TypeError, match="expected an nn.Module"):
        model_state.open_source(42)
    target = model_state.open_target({"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="entry 'w'"):
        model_state.write_batch(target, ["w"], ["float32"], [[3]], [torch.zeros(12, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="entry 'w'"):
        model_state.write_batch(target, ["w"], ["float64"], [[2]], [torch.zeros(16, dtype=torch.uint8)])
    with pytest.raises(KeyError, match="'v'"):
        model_state.write_batch(target, ["v"], ["float32"], [[2]], [torch.zeros(8, dtype=torch.uint8)])
    with pytest.raises(IndexError):
        model_state.read_batch(model_state.open_source({"w": torch.zeros(1)}), [0, 1])
