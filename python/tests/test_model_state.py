"""The Python side of model-weight transfer (interop_helpers.model_state): sources, raw bytes, write-back."""

import json
import sys

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
    assert json.loads(model_state.describe_json(state)) == rows


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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pinned_entries_describe_their_c_order_bytes_and_stay_alive(dtype):
    import ctypes

    source = (torch.randn(3, 5, dtype=torch.float64) * 100).to(dtype)
    contiguous = source.clone()
    state = model_state.open_source({"t": source.t(), "c": contiguous, "empty": torch.zeros(0, dtype=dtype)})
    (addr_t, size_t), (addr_c, size_c), (addr_e, size_e) = json.loads(model_state.pin_batch(state, [0, 1, 2]))
    assert addr_c == contiguous.data_ptr(), "a contiguous CPU tensor is pinned as it is (no copy)"
    assert (size_t, size_c, size_e, addr_e) == (source.numel() * source.element_size(),) * 2 + (0, 0)
    expected = source.t().contiguous().view(torch.uint8).reshape(-1)
    del source  # the pinned copy of the transposed view stays alive in the state
    assert bytes(ctypes.string_at(addr_t, size_t)) == bytes(expected.tolist())
    model_state.pin_batch(state, [1])
    assert len(state.pinned) == 1, "the previous batch is released"


def test_conjugate_views_travel_as_their_values_on_both_routes():
    z = torch.complex(torch.arange(4.0), torch.ones(4))
    state = model_state.open_source({"z": z.conj()})
    blob, = model_state.read_batch(state, [0])
    assert torch.equal(blob.view(torch.complex64), z.conj().resolve_conj())
    (address, size), = json.loads(model_state.pin_batch(state, [0]))
    assert state.pinned[0].data_ptr() == address and torch.equal(state.pinned[0], z.conj()) and not state.pinned[0].is_conj()


def test_pin_batch_refuses_indices_out_of_range():
    state = model_state.open_source({"w": torch.zeros(1)})
    for bad in ([1], [-1], [True]):
        with pytest.raises(IndexError):
            model_state.pin_batch(state, bad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pinned_targets_take_bytes_in_place_or_through_staging(dtype):
    import ctypes

    values = (torch.randn(3, 5, dtype=torch.float64) * 100).to(dtype)
    contiguous = torch.zeros(3, 5, dtype=dtype)
    transposed = torch.zeros(5, 3, dtype=dtype).t()  # non-contiguous: staged
    target = model_state.open_target({"c": contiguous, "t": transposed})
    name = model_state.describe(target)[0][1]
    rows = json.loads(model_state.pin_targets(target, ["c", "t"], [name, name], [[3, 5], [3, 5]]))
    assert rows[0] == [contiguous.data_ptr(), values.numel() * values.element_size()], "written in place"
    assert rows[1][0] != transposed.data_ptr()
    raw = values.contiguous().view(torch.uint8).reshape(-1)
    for address, size in rows:  # what process_vm_writev does from the host
        ctypes.memmove(address, raw.data_ptr(), size)
    version = contiguous._version
    model_state.commit_batch(target)
    assert torch.equal(contiguous.view(torch.uint8), values.view(torch.uint8))
    assert torch.equal(transposed.contiguous().view(torch.uint8), values.view(torch.uint8))
    if hasattr(torch.autograd, "graph") and hasattr(torch.autograd.graph, "increment_version"):
        assert contiguous._version > version, "written in place: the version counter moves, as after copy_"
    assert target.pinned is None


def test_pinned_targets_are_checked_like_write_batch():
    target = model_state.open_target({"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="entry 'w'"):
        model_state.pin_targets(target, ["w"], ["float32"], [[3]])
    with pytest.raises(ValueError, match="entry 'w'"):
        model_state.pin_targets(target, ["w"], ["float64"], [[2]])
    with pytest.raises(KeyError, match="'v'"):
        model_state.pin_targets(target, ["v"], ["float32"], [[2]])
    rows = json.loads(model_state.pin_targets(target, ["w"], ["float64"], [[2]], True))
    assert rows[0][1] == 16, "converting: staged in the data's dtype"


def test_open_described_places_the_entries_that_need_no_pinning():
    plain = torch.arange(6, dtype=torch.float32)
    state, description, places = model_state.open_described({"p": plain, "t": plain.reshape(2, 3).t(), "e": torch.zeros(0)})
    assert json.loads(description) == model_state.describe(state)
    assert json.loads(places) == [[plain.data_ptr(), 24], None, [0, 0]]


def test_huge_pages_are_asked_for_only_for_a_range_described_again_and_only_inside_it():
    calls = []
    pages = model_state._HugePages()
    pages._madvise = lambda start, length, advice: calls.append((start, length, advice)) or 0
    size = pages.SIZE
    ranges = [
        (size * 10 + 64, size * 3),  # aligned part: [11, 13) x 2 MiB
        (size * 20, size - 4096),  # under 2 MiB: never
        (size * 30 + 4096, size + 8192),  # no whole aligned 2 MiB inside: never
    ]
    pages.collapse_repeated(ranges)
    assert calls == [], "the first description of a range asks for nothing"
    pages.collapse_repeated(ranges)
    assert calls == [(size * 11, size * 2, pages.MADV_COLLAPSE)]
    pages.collapse_repeated(ranges)
    assert len(calls) == 1, "once per range"


def test_huge_pages_stop_being_asked_for_after_repeated_failures():
    calls = []
    pages = model_state._HugePages()
    pages._madvise = lambda start, length, advice: calls.append(start) or -1
    size = pages.SIZE
    ranges = [(size * (10 + 4 * i), size * 2) for i in range(8)]
    pages.collapse_repeated(ranges)
    pages.collapse_repeated(ranges)
    assert len(calls) == 4
    pages.collapse_repeated([(size * 100, size * 2)])
    pages.collapse_repeated([(size * 100, size * 2)])
    assert len(calls) == 4


def test_huge_pages_go_on_after_failing_ranges_once_a_collapse_has_worked():
    # Memory of a file mapping (a numpy memmap, torch.load(mmap=True)) cannot be collapsed: EINVAL, as from a kernel
    # without MADV_COLLAPSE. Once a collapse has worked here, such ranges must not turn collapses off for later ones.
    calls = []
    size = model_state._HugePages.SIZE
    pages = model_state._HugePages()
    good = size * 10
    pages._madvise = lambda start, length, advice: calls.append(start) or (0 if start < size * 50 else -1)
    for ranges in ([(good, size)], [(size * (100 + 4 * i), size) for i in range(6)], [(size * 20, size)]):
        pages.collapse_repeated(ranges)
        pages.collapse_repeated(ranges)
    assert calls == [good] + [size * (100 + 4 * i) for i in range(6)] + [size * 20]


def test_a_passing_shortage_at_the_probe_does_not_turn_huge_pages_off():
    import errno

    answers = [(False, errno.EAGAIN), (False, errno.ENOMEM), (True, 0)]
    pages = model_state._HugePages()
    pages._probe = lambda madvise: answers.pop(0)
    if not sys.platform.startswith("linux"):
        pytest.skip("MADV_COLLAPSE is Linux's")
    assert not pages._call() and not pages._call(), "no huge page at the moment: nothing to call yet"
    assert pages._call(), "probed again at the next use, and it worked"
    assert pages._worked


def test_a_kernel_without_collapse_is_probed_once_and_a_shortage_a_bounded_number_of_times():
    import errno

    for error, probes in ((errno.EINVAL, 1), (errno.EAGAIN, model_state._HugePages.PROBES + 1)):
        seen = []
        pages = model_state._HugePages()
        pages._probe = lambda madvise, error=error, seen=seen: seen.append(error) or (False, error)
        for _ in range(10):
            assert not pages._call()
        assert len(seen) == (probes if sys.platform.startswith("linux") else 0)


def test_file_mapped_tensors_do_not_turn_huge_pages_off_for_later_models(tmp_path):
    np = pytest.importorskip("numpy")
    pages = model_state._HugePages()
    real = next((f for f in (pages._call() for _ in range(model_state._HugePages.PROBES + 1)) if f), None)
    if not real:
        pytest.skip("this kernel does not collapse (no MADV_COLLAPSE, Linux < 6.1, or not Linux)")
    results = []

    def recording(start, length, advice):
        result = real(start, length, advice)
        results.append(result)
        return result

    pages._madvise = recording
    saved, model_state._HUGE_PAGES = model_state._HUGE_PAGES, pages
    try:
        maps = []
        for i in range(5):  # five models over file mappings, each described twice: five failing collapses
            mm = np.memmap(tmp_path / f"m{i}.bin", dtype=np.float32, mode="w+", shape=(1 << 20,))
            mm[:] = i
            maps.append(mm)
            source = {"w": torch.from_numpy(mm)}
            model_state.open_described(source, huge_pages=True)
            model_state.open_described(source, huge_pages=True)
        if 0 in results:
            pytest.skip("file mappings collapse on this file system")
        assert len(results) == 5
        anonymous = {"w": torch.ones(2 << 20)}  # 8 MiB of this process's own memory
        model_state.open_described(anonymous, huge_pages=True)
        model_state.open_described(anonymous, huge_pages=True)
        assert results[5:] == [0], "the later model's memory is collapsed"
        del maps
    finally:
        model_state._HUGE_PAGES = saved


def test_open_described_with_huge_pages_keeps_the_bytes_and_the_places():
    big = torch.arange(3 << 20, dtype=torch.float32)  # 12 MiB: whole 2 MiB pages inside
    before = big.clone()
    first = model_state.open_described({"w": big}, True)
    second = model_state.open_described({"w": big}, True)  # described again: collapsed where the kernel can
    assert json.loads(first[2]) == json.loads(second[2]) == [[big.data_ptr(), big.numel() * 4]]
    assert torch.equal(big, before)


def test_open_described_keeps_parameters_as_they_are_and_hands_out_detached_bytes():
    model = torch.nn.Linear(3, 2)
    state, _, places = model_state.open_described(model)
    assert json.loads(places)[0] == [model.weight.data_ptr(), 24]
    raw = model_state.read_batch(state, [0, 1])
    assert not raw[0].requires_grad and raw[0].dtype == torch.uint8
    assert torch.equal(raw[0].view(torch.float32).reshape(2, 3), model.weight.detach())
    assert json.loads(model_state.pin_batch(state, [1])) == [[model.bias.data_ptr(), 8]]


def test_huge_pages_take_ranges_less_than_a_page_apart_as_one():
    calls = []
    pages = model_state._HugePages()
    pages._madvise = lambda start, length, advice: calls.append((start, length)) or 0
    size = pages.SIZE
    # three tensors one after the other (gaps of 64 and 4000 bytes): together they cover [11, 13) x 2 MiB, alone none;
    # two a whole page apart, which would cover [21, 22) x 2 MiB together: not joined
    ranges = [(size * 10 + 100, size), (size * 11 + 164, size), (size * 12 + 4164, size),
              (size * 20 + size // 2, size), (size * 21 + size // 2 + 4096, size)]
    pages.collapse_repeated(ranges)
    pages.collapse_repeated(list(reversed(ranges)))
    assert calls == [(size * 11, size * 2)], "the joined run covers [11, 13) x 2 MiB; the far range alone covers none"


def test_open_target_described_places_plain_targets_and_commit_bumps_the_ones_written_there():
    import ctypes

    values = torch.arange(15, dtype=torch.float32).reshape(3, 5)
    plain = torch.zeros(3, 5)
    transposed = torch.zeros(5, 3).t()  # no place: the host pins it (pin_targets)
    other = torch.zeros(2)
    target, description, places = model_state.open_target_described({"c": plain, "t": transposed, "o": other})
    assert [row[0] for row in json.loads(description)] == ["c", "t", "o"]
    assert json.loads(places) == [[plain.data_ptr(), 60], None, [other.data_ptr(), 8]]
    ctypes.memmove(plain.data_ptr(), values.data_ptr(), 60)  # what process_vm_writev does from the host
    versions = plain._version, other._version
    model_state.commit_batch(target, [0])
    assert torch.equal(plain, values)
    if hasattr(torch.autograd, "graph") and hasattr(torch.autograd.graph, "increment_version"):
        assert plain._version > versions[0], "written in place: the version counter moves, as after copy_"
        assert other._version == versions[1], "not written: unchanged"
    with pytest.raises(IndexError):
        model_state.commit_batch(target, [3])


def test_huge_pages_are_not_asked_for_in_a_transfer_of_more_than_max_bytes():
    calls = []
    pages = model_state._HugePages()
    pages._madvise = lambda start, length, advice: calls.append((start, length)) or 0
    size = pages.SIZE
    large = [(size * 10, pages.MAX_BYTES // 2), (size * 10 + pages.MAX_BYTES, pages.MAX_BYTES // 2 + size)]
    for _ in range(3):
        pages.collapse_repeated(large)
    assert calls == []
    pages.collapse_repeated(large[:1])
    pages.collapse_repeated(large[:1])
    assert calls == [(size * 10, pages.MAX_BYTES // 2)], "a transfer within the limit"
