"""The isolated worker's control block (protocol.ControlChannel) and results written in place (output.empty).

A real worker is started with ``--control-fd`` and this test process as its host: the block is a memfd of this
process, written the way src/Interop/Isolated/ControlBlock.cs writes it (frames in shared memory, futex doorbells).
"""
import contextlib
import json
import struct
import mmap
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PYTHON_DIR))
from interop_helpers import output, protocol, worker as worker_module  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"),
                                reason="isolated mode needs Linux (memfd, /proc/PID/fd)")

REQUEST_SEQ, REQUEST_LENGTH, REPLY_SEQ, HOST_WAITING, REPLY_LENGTH = 16, 18, 32, 33, 34


class BlockHost:
    """This process as the host of a worker that uses a control block."""

    def __init__(self):
        self.fd = os.memfd_create("interop-control-test", 0)
        os.ftruncate(self.fd, protocol.CONTROL_SIZE)
        self.map = mmap.mmap(self.fd, protocol.CONTROL_SIZE)
        self.words = memoryview(self.map).cast("I")
        self.words[0] = protocol.CONTROL_MAGIC
        self.sequence = 0
        env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
        self.proc = subprocess.Popen([sys.executable, "-m", "interop_helpers.worker", "--host-pid", str(os.getpid()),
                                      "--control-fd", str(self.fd)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        header = self.proc.stdout.read(4)
        self.hello = json.loads(self.proc.stdout.read(int.from_bytes(header, "little")))

    def post(self, message, length=None):
        body = message if type(message) is bytes else json.dumps(dict(message, v=1)).encode()
        self.map[4096:4096 + len(body)] = body
        self.words[REQUEST_LENGTH] = len(body) if length is None else length
        self.sequence += 1
        self.words[REQUEST_SEQ] = self.sequence
        protocol._Futex().wake(self._address(REQUEST_SEQ))  # the worker may sleep on the futex

    def _address(self, word):
        import ctypes

        return ctypes.addressof(ctypes.c_char.from_buffer(self.map)) + 4 * word

    def reply(self, limit=20.0):
        until = time.monotonic() + limit
        while self.words[REPLY_SEQ] != self.sequence:
            if time.monotonic() > until or self.proc.poll() is not None:
                return None
            time.sleep(0.0005)
        n = self.words[REPLY_LENGTH]
        start = 4096 + protocol.CONTROL_AREA
        body = bytes(self.map[start:start + n])
        return body if body[:4] == protocol.BINARY_MAGIC else json.loads(body)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            s.close()
        self.words.release()
        self.map.close()
        os.close(self.fd)


@pytest.fixture
def host():
    h = BlockHost()
    yield h
    h.close()


def test_the_worker_accepts_the_block_and_answers_through_it(host):
    assert host.hello["control"] is True
    for i in range(3):
        host.post({"id": i + 1, "op": "call", "target": {"base": "module", "name": "builtins", "attrs": ["abs"]},
                   "args": [{"t": "int", "v": -i}]})
        reply = host.reply()
        assert reply["ok"] and reply["value"] == {"t": "int", "v": i}
        assert "closed" not in reply and "regions" not in reply  # empty lists are left out


def test_a_worker_rung_ahead_of_a_request_waits_for_it_and_answers_it(host):
    # The host rings a sleeping worker before copying a large payload (ControlBlock.WakeWorkerAhead); the worker then
    # spins for the request and sleeps again when none comes. Rings without a request must be harmless.
    worker_waiting = 17
    until = time.monotonic() + 20
    while host.words[worker_waiting] != 1:  # asleep on the futex (after its first spin)
        assert time.monotonic() < until and host.proc.poll() is None
        time.sleep(0.001)
    futex = protocol._Futex()
    spun = 0
    for _ in range(20):
        futex.wake(host._address(REQUEST_SEQ))
        deadline = time.perf_counter() + 0.005
        while time.perf_counter() < deadline:
            if host.words[worker_waiting] == 0:  # awake and spinning for the request
                spun += 1
                break
        time.sleep(0.002)
    assert spun > 0, "a rung worker spins for the request instead of going straight back to sleep"
    assert host.proc.poll() is None and host.words[REPLY_SEQ] == 0, "no request: nothing answered"
    assert host.words[worker_waiting] == 1, "after its spin the rung worker sleeps again"
    host.post({"id": 1, "op": "call", "target": {"base": "module", "name": "builtins", "attrs": ["abs"]},
               "args": [{"t": "int", "v": -5}]})
    assert host.reply()["value"] == {"t": "int", "v": 5}


def test_a_request_length_outside_the_area_ends_the_worker_with_code_3(host):
    host.post({"id": 1, "op": "ping"}, length=protocol.CONTROL_AREA + 1)
    assert host.proc.wait(20) == 3
    assert b"outside" in host.proc.stderr.read()


def test_the_worker_exits_when_the_host_closes_its_pipe(host):
    host.proc.stdin.close()
    assert host.proc.wait(20) == 0  # noticed between futex slices, without any request


def test_a_worker_given_an_unusable_block_says_so_and_serves_over_the_pipes():
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    fd = os.memfd_create("interop-control-test", 0)
    os.ftruncate(fd, 16)  # too small
    proc = subprocess.Popen([sys.executable, "-m", "interop_helpers.worker", "--host-pid", str(os.getpid()),
                             "--control-fd", str(fd)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        header = proc.stdout.read(4)
        hello = json.loads(proc.stdout.read(int.from_bytes(header, "little")))
        assert hello["control"] is False
        body = json.dumps({"v": 1, "id": 1, "op": "ping"}).encode()
        proc.stdin.write(len(body).to_bytes(4, "little") + body)
        proc.stdin.flush()
        header = proc.stdout.read(4)
        assert json.loads(proc.stdout.read(int.from_bytes(header, "little")))["ok"] is True
    finally:
        proc.kill()
        proc.wait(10)
        for s in (proc.stdin, proc.stdout, proc.stderr):
            s.close()
        os.close(fd)


# ---- output.empty: results written in place ---------------------------------------------------------------


@pytest.fixture
def serving():
    """A Worker object in this process, with one request region holding 16 float32s (0..15)."""
    w = worker_module.Worker(os.getpid())
    fd = os.memfd_create("interop-test", 0)
    os.ftruncate(fd, 1 << 20)
    w.request_regions[1] = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED)
    np.frombuffer(w.request_regions[1], np.float32, 16)[:] = np.arange(16)
    module = types.ModuleType("interop_output_fixture")
    sys.modules[module.__name__] = module
    yield w, module
    del sys.modules[module.__name__]
    output._allocator = None
    os.close(fd)


def _call(w, module, fn, kind="ndarray", n=16):
    """``fn`` called with the request region's first ``n`` float32s as a ``kind`` argument."""
    setattr(module, fn.__name__, fn)
    request = protocol.check_request({"v": 1, "op": "call", "id": 1, "args": [
        {"t": kind, "dtype": "float32", "shape": [n], "offset": 0, "region": 1}],
        "target": {"base": "module", "name": module.__name__, "attrs": [fn.__name__]}})
    return w.handle(request)


def _values(w, entry):
    return np.frombuffer(w.result_regions[entry["region"]].map, np.float32, 16, entry["offset"])


def test_an_output_empty_result_is_not_copied_and_an_ordinary_one_is(serving):
    w, module = serving

    def doubled_in_place(x):
        out = output.empty(x.shape, x.dtype, kind="ndarray")
        np.multiply(x, 2, out=out)
        return out

    def doubled(x):
        return x * 2

    before = w.copied_bytes
    reply = _call(w, module, doubled_in_place)
    assert w.copied_bytes == before, "written in place: nothing copied"
    assert list(_values(w, reply["value"])) == [2.0 * i for i in range(16)]
    w.release_results(reply["result_regions"], [])
    reply = _call(w, module, doubled)
    assert w.copied_bytes == before + 64, "an ordinary result is copied once"
    assert list(_values(w, reply["value"])) == [2.0 * i for i in range(16)]


def test_a_sliced_output_is_copied_and_a_mixed_reply_uses_one_region(serving):
    w, module = serving

    def mixed(x):
        a = output.empty((16,), "float32", kind="ndarray")
        a[:] = x
        b = output.empty((32,), np.float32, kind="ndarray")
        b[:] = 7
        return [a, b[::2], x + 1]

    before = w.copied_bytes
    reply = _call(w, module, mixed)
    items = reply["value"]["items"]
    assert len(reply["result_regions"]) == 1 and {i["region"] for i in items} == set(reply["result_regions"])
    assert w.copied_bytes == before + 2 * 64, "the strided view and the ordinary array are copied, the first is not"
    assert list(_values(w, items[0])) == list(range(16))
    assert list(_values(w, items[1])) == [7.0] * 16
    assert list(_values(w, items[2])) == [i + 1.0 for i in range(16)]
    ends = sorted((i["offset"], i["offset"] + 64) for i in items)
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:])), "no two arrays overlap"


def test_an_output_region_of_a_call_that_raised_goes_back_to_the_pool(serving):
    w, module = serving

    def fails(x):
        output.empty((16,), "float32", kind="ndarray")
        raise RuntimeError("no")

    reply = _call(w, module, fails)
    assert reply["ok"] is False
    assert len(w.free_results) == 1 and w.out is None


def test_outside_a_worker_output_empty_is_an_ordinary_array():
    saved, output._allocator = output._allocator, None
    try:
        a = output.empty((2, 3), "float64", kind="ndarray")
        assert a.shape == (2, 3) and a.dtype == np.float64
        with pytest.raises(TypeError):
            output.empty((2,), "bfloat16", kind="ndarray")
        with pytest.raises(ValueError):
            output.empty((2,), "float32", kind="list")
    finally:
        output._allocator = saved


def _copied_result(w, value):
    """``value`` encoded as a result and copied into a result region: (its entry, a copy of the region's bytes)."""
    pending, reply = [], {"regions": [], "result_regions": []}
    entry = w.encode(value, pending, {"detach": True, "upcast": False})
    w.place_arrays(pending, reply)
    assert entry["t"] == "ndarray"
    region = w.result_regions[entry["region"]] if entry["region"] else None
    nbytes = int(np.prod(entry["shape"], dtype=np.int64)) * np.dtype(entry["dtype"]).itemsize
    data = bytes(region.map[entry["offset"]:entry["offset"] + nbytes]) if nbytes else b""
    w.release_results(reply["result_regions"], [])
    return entry, data


# ---- results answered inside the request region ----------------------------------------------------------

_LARGE = worker_module.IN_REQUEST_BYTES // 4 + 16  # float32s: an argument (and its tail past 3) answered in place


def _call_large(w, module, fn, n=_LARGE):
    """``fn`` called with the request region's first ``n`` float32s (written 0, 1, 2, ... first) as an ndarray."""
    np.frombuffer(w.request_regions[1], np.float32, n)[:] = np.arange(n)
    return _call(w, module, fn, n=n)


def _arrays(reply):
    value = reply["value"]
    return value["items"] if value["t"] in ("list", "tuple") else [value]


def _region_values(w, reply, entry):
    """A result array's elements, read from the region the reply names (a request or a result region)."""
    mapping = w.request_regions[1] if reply.get("result_in_request") else w.result_regions[entry["region"]].map
    return np.frombuffer(mapping, np.float32, int(np.prod(entry["shape"])), entry["offset"]).copy()


def identity(x):
    return x


def doubled_in_place(x):
    x *= 2
    return x


def tail(x):
    return x[3:]


def pair(x):
    return (x, x[:10])


@pytest.mark.parametrize("fn, offsets, expected", [
    (identity, [0], lambda a: [a]),
    (doubled_in_place, [0], lambda a: [a * 2]),
    (tail, [12], lambda a: [a[3:]]),
    (pair, [0, 0], lambda a: [a, a[:10]]),
])
def test_a_large_argument_returned_changed_in_place_or_viewed_is_answered_in_its_request_region(serving, fn, offsets, expected):
    w, module = serving
    before = w.copied_bytes
    reply = _call_large(w, module, fn)
    assert reply["result_in_request"] is True and reply["result_regions"] == [1], "the request region itself"
    assert w.copied_bytes == before, "nothing copied back"
    entries = _arrays(reply)
    assert [e["offset"] for e in entries] == offsets and {e["region"] for e in entries} == {1}
    for entry, values in zip(entries, expected(np.arange(_LARGE, dtype=np.float32))):
        assert np.array_equal(_region_values(w, reply, entry), values)
    assert "retained" not in reply or not reply["retained"], "Python kept nothing: the host may lease the region"
    if reply["value"]["t"] == "ndarray":
        assert struct.unpack_from("<H", protocol.encode_binary_reply(reply), 6)[0] == protocol.REPLY_IN_REQUEST


def strided(x):
    return x[::2]


def computed(x):
    return x * 2


def one_kept_one_computed(x):
    return (x, x * 2)


def misaligned(x):
    return x.view(np.uint8)[1:1 + 4 * 1000].view(np.float32)


@pytest.mark.parametrize("fn, n", [(strided, _LARGE), (computed, _LARGE), (one_kept_one_computed, _LARGE),
                                   (misaligned, _LARGE), (identity, worker_module.IN_REQUEST_BYTES // 4 - 1)])
def test_strided_computed_mixed_misaligned_or_small_results_are_copied(serving, fn, n):
    w, module = serving
    before = w.copied_bytes
    reply = _call_large(w, module, fn, n)
    assert "result_in_request" not in reply
    assert all(e["region"] in w.result_regions for e in _arrays(reply)) and w.copied_bytes > before
    assert struct.unpack_from("<H", protocol.encode_binary_reply(reply) or bytes(8), 6)[0] == 0


def test_an_array_over_a_request_region_that_the_call_did_not_use_is_copied(serving):
    w, module = serving
    stash = np.frombuffer(w.request_regions[1], np.float32, _LARGE)  # not an argument of the call below
    module.stashed = lambda n: stash[:n]
    request = protocol.check_request({"v": 1, "op": "call", "id": 1, "args": [{"t": "int", "v": _LARGE}],
                                      "target": {"base": "module", "name": module.__name__, "attrs": ["stashed"]}})
    reply = w.handle(request)
    assert "result_in_request" not in reply and reply["value"]["region"] in w.result_regions


_kept_arguments = []


def kept(x):
    _kept_arguments.append(x)
    return x


def kept_slice(x):
    _kept_arguments.append(x[:])  # NumPy bases x[:] on the frombuffer array under x, not on x
    return x


def kept_transposed(x):
    _kept_arguments.append(x.T)
    return x


@pytest.mark.parametrize("fn", [kept, kept_slice, kept_transposed])
def test_an_argument_python_keeps_and_returns_is_copied_as_it_was_when_the_call_returned(serving, fn):
    w, module = serving
    before = w.copied_bytes
    reply = _call_large(w, module, fn)
    try:
        assert reply["retained"] == [1], "Python kept a view of the request region"
        assert "result_in_request" not in reply and reply["value"]["region"] in w.result_regions
        assert w.copied_bytes == before + _LARGE * 4, "copied out of the request region after all"
        entry = reply["value"]
        _kept_arguments[-1][:] = -1  # the kept argument changes later: the result must not
        assert np.array_equal(_region_values(w, reply, entry), np.arange(_LARGE, dtype=np.float32))
        assert w.in_request is None
    finally:
        _kept_arguments.clear()


def test_a_copy_out_that_fails_is_an_error_reply_that_still_reports_the_kept_region(serving, monkeypatch):
    w, module = serving

    def no_region(size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(w, "result_region", no_region)
    try:
        reply = _call_large(w, module, kept)
    finally:
        _kept_arguments.clear()
    assert reply["ok"] is False and "No space left" in reply["error"]["message"]
    assert reply["retained"] == [1], "the host must not write the kept region again"
    assert w.in_request is None


def test_a_large_result_wakes_a_sleeping_host_before_it_is_copied_and_a_small_one_does_not():
    w = worker_module.Worker(os.getpid())
    rings = []
    w.wake_host_ahead = lambda: rings.append(w.copied_bytes)  # the bytes copied so far when the host is rung
    try:
        small = np.ones(worker_module.WAKE_AHEAD_BYTES // 4 - 1, np.float32)
        large = np.ones(worker_module.WAKE_AHEAD_BYTES // 4, np.float32)
        _copied_result(w, small)
        assert rings == [], "a result under the threshold copies without a system call"
        before = w.copied_bytes
        _copied_result(w, large)
        assert rings == [before], "one ring, before the large result is copied"
    finally:
        output._allocator = None


def _odd_results():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.matrix([[1, 2], [3, 4]], dtype=np.int64)
    grid = np.arange(24, dtype=np.float64).reshape(4, 6)
    read_only = np.arange(5, dtype=np.int32)
    read_only.flags.writeable = False
    return {
        "0-d": np.array(3.5),
        "0-d bool": np.array(True),
        "zero-size": np.zeros((0, 3), np.float32),
        "zero-size transposed": np.zeros((3, 0), np.float32).T,
        "strided": grid[:, ::2],
        "Fortran order": np.asfortranarray(grid),
        "transposed": grid.T,
        "negative strides": grid[::-1],
        "big-endian": np.arange(6, dtype=">i4"),
        "big-endian Fortran order": np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3)),
        "bool": np.array([True, False, True]),
        "complex64": np.arange(4, dtype=np.complex64) * (1 + 2j),
        "complex128 strided": (np.arange(8, dtype=np.complex128) * 1j)[::3],
        "float16": np.arange(7, dtype=np.float16),
        "uint64": np.array([2 ** 64 - 1, 0], np.uint64),
        "read-only": read_only,
        "C-contiguous with an odd stride on a length-1 axis":
            np.lib.stride_tricks.as_strided(np.arange(4, dtype=np.float32), (1, 4), (12345, 4)),
        "broadcast (stride 0)": np.broadcast_to(np.arange(3.0), (2, 3)),
        "matrix": matrix,
        "masked (its data)": np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0]),
    }


@pytest.mark.parametrize("name", list(_odd_results()))
def test_every_kind_of_array_result_is_copied_as_its_elements_in_c_order(name):
    value = _odd_results()[name]
    w = worker_module.Worker(os.getpid())
    try:
        entry, data = _copied_result(w, value)
        plain = np.asarray(value.data if isinstance(value, np.ma.MaskedArray) else value)
        expected = np.ascontiguousarray(plain.astype(plain.dtype.newbyteorder("=")))
        assert entry["shape"] == list(plain.shape) and entry["dtype"] == expected.dtype.name
        assert data == expected.tobytes()
    finally:
        output._allocator = None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python classes define __buffer__ from 3.12 on")
def test_a_result_is_copied_from_the_arrays_own_memory_even_when_its_class_exports_another_buffer():
    class Exported(np.ndarray):  # a subclass whose buffer protocol answers something else than its elements
        def __buffer__(self, flags):
            return memoryview(b"\xaa" * self.nbytes)

    w = worker_module.Worker(os.getpid())
    try:
        value = np.arange(4, dtype=np.float32).view(Exported)
        entry, data = _copied_result(w, value)
        assert data == np.arange(4, dtype=np.float32).tobytes(), "the elements, as np.copyto reads them"
    finally:
        output._allocator = None


def test_file_modules_are_reused_while_the_file_is_unchanged_and_reloaded_when_it_changes(tmp_path, monkeypatch):
    from interop_helpers import calls

    script = tmp_path / "interop_cached_file.py"
    script.write_text("VALUE = 1\n")
    w = worker_module.Worker(os.getpid())
    loads = []
    real = calls.load_file
    monkeypatch.setattr(calls, "load_file", lambda p: loads.append(p) or real(p))
    try:
        first = w.load_file(str(script))
        assert w.load_file(str(script)) is first and len(loads) == 1, "unchanged: the cached module, no second load"
        script.write_text("VALUE = 22\n")  # another size: a changed stamp even within the clock's resolution
        assert w.load_file(str(script)).VALUE == 22 and len(loads) == 2
        del sys.modules[first.__name__]
        w.load_file(str(script))
        assert len(loads) == 3, "a module removed from sys.modules is loaded again"
    finally:
        output._allocator = None
        sys.modules.pop("interop_cached_file", None)


def test_a_loaded_generation_is_checked_once_and_a_newer_generation_checks_the_file_again(tmp_path, monkeypatch):
    from interop_helpers import calls

    script = tmp_path / "interop_generation_file.py"
    script.write_text("VALUE = 1\n")
    w = worker_module.Worker(os.getpid())
    loads, stats = [], []
    real_load, real_stat = calls.load_file, os.stat
    monkeypatch.setattr(calls, "load_file", lambda p: loads.append(p) or real_load(p))
    try:
        first = w.load_file(str(script), 3)

        class CountingOs:  # the worker's own stats only (calls.load_file makes several more through pathlib)
            def __getattr__(self, name):
                return getattr(os, name)

            def stat(self, p, *a, **k):
                stats.append(p)
                return real_stat(p, *a, **k)

        monkeypatch.setattr(worker_module, "os", CountingOs())
        for generation in (3, 2, 3):
            assert w.load_file(str(script), generation) is first
        assert stats == [], "a generation already checked (or an older one) makes no file-system call"
        script.write_text("VALUE = 22\n")  # changed, but no newer load: the calls keep the module, as in-process
        assert w.load_file(str(script), 3).VALUE == 1 and len(loads) == 1
        assert w.load_file(str(script), 4).VALUE == 22 and len(loads) == 2, "a newer load runs the changed file"
        assert len(stats) == 1
        assert w.load_file(str(script), 0).VALUE == 22 and len(stats) == 2, "generation 0 checks every time"
        del sys.modules[w.load_file(str(script), 4).__name__]
        w.load_file(str(script), 4)
        assert len(loads) == 3, "a module removed from sys.modules is loaded again, whatever the generation"
    finally:
        output._allocator = None
        sys.modules.pop("interop_generation_file", None)


def test_a_newer_load_that_raises_leaves_the_loaded_module_to_the_earlier_generation(tmp_path):
    script = tmp_path / "interop_generation_broken.py"
    script.write_text("VALUE = 1\n")
    w = worker_module.Worker(os.getpid())
    try:
        first = w.load_file(str(script), 3)
        script.write_text("raise RuntimeError('broken on purpose')\n")
        for _ in range(2):
            with pytest.raises(RuntimeError, match="broken on purpose"):
                w.load_file(str(script), 4)  # the failed load checks (and fails) again at each call
            assert w.load_file(str(script), 3) is first, "the earlier load's calls keep its module, as in-process"
        script.write_text("VALUE = 333\n")
        assert w.load_file(str(script), 4).VALUE == 333, "once the file is fixed, the newer load runs it"
    finally:
        output._allocator = None
        sys.modules.pop("interop_generation_broken", None)


# ---- binary calls (protocol.check_binary_request / encode_binary_reply; WireBinary.cs is the host side) -------------


def binary_call(request_id, base, name, attrs, args, handle=0, grad=0, flags=1, regions=(), lists=((), (), ())):
    """A binary call frame as the host writes it (docs/isolated.md, "Binary calls"); args are (tag, payload bytes)."""
    name = name.encode()
    body = struct.pack("<4sBBBBqqHHIHHHH", b"INB1", 1, grad, flags, base, request_id, handle, len(args), len(attrs),
                       len(name), len(regions), *(len(items) for items in lists)) + name
    for a in attrs:
        body += struct.pack("<H", len(a)) + a.encode()
    for r in regions:
        body += struct.pack("<qqq", *r)
    for items in lists:
        body += b"".join(struct.pack("<q", i) for i in items)
    return body + b"".join(bytes([tag]) + payload for tag, payload in args)


def decode_binary_reply(body):
    magic, kind, tag, zero, request_id, nregions, nresults, nclosed, nretained = struct.unpack_from("<4sBBHqHHHH", body)
    pos = 24
    if tag == 0:
        value = None
    elif tag == 1:
        value, pos = bool(body[pos]), pos + 1
    elif tag == 2:
        (value,), pos = struct.unpack_from("<q", body, pos), pos + 8
    elif tag == 3:
        (value,), pos = struct.unpack_from("<d", body, pos), pos + 8
    else:
        code, rank, _, region, offset = struct.unpack_from("<BBHIq", body, pos)
        pos += 16
        shape = struct.unpack_from("<%dq" % rank, body, pos)
        pos += 8 * rank
        value = ("array", list(protocol.dtypes.DTYPES)[code], list(shape), region, offset)
    regions = [struct.unpack_from("<qqqq", body, pos + 32 * i) for i in range(nregions)]
    pos += 32 * nregions
    rest = struct.unpack_from("<%dq" % (nresults + nclosed + nretained), body, pos)
    assert pos + 8 * len(rest) == len(body)
    return {"id": request_id, "value": value, "regions": regions, "result_regions": list(rest[:nresults])}


def _int_arg(v):
    return (2, struct.pack("<q", v))


def test_a_binary_call_gets_a_binary_reply_and_other_results_travel_as_json(host):
    host.post(binary_call(7, 0, "builtins", ["abs"], [_int_arg(-5)]))
    reply = decode_binary_reply(host.reply())
    assert reply["id"] == 7 and reply["value"] == 5
    host.post(binary_call(8, 0, "math", ["copysign"], [(3, struct.pack("<d", 2.5)), (3, struct.pack("<d", -0.0))]))
    assert decode_binary_reply(host.reply())["value"] == -2.5
    host.post(binary_call(9, 0, "builtins", ["str"], [(1, b"\x01")]))
    reply = host.reply()  # a str result: JSON
    assert reply["ok"] and reply["value"] == {"t": "str", "v": "True"}
    host.post(binary_call(10, 0, "builtins", ["int"], [(0, b"")]))  # int(None) raises: a JSON error reply
    reply = host.reply()
    assert not reply["ok"] and reply["error"]["type"] == "builtins.TypeError" and "int()" in reply["error"]["message"]


def test_a_binary_array_argument_is_read_from_its_region_and_an_array_result_comes_back(host):
    fd = os.memfd_create("interop-request-test", 0)
    os.ftruncate(fd, 1 << 20)
    region = mmap.mmap(fd, 1 << 20)
    try:
        np.frombuffer(region, np.float32, 16)[:] = np.arange(16, dtype=np.float32)
        array = (5, struct.pack("<BBHIq", list(protocol.dtypes.DTYPES).index("float32"), 1, 0, 3, 0) + struct.pack("<q", 16))
        host.post(binary_call(1, 0, "numpy", ["negative"], [array], regions=[(3, fd, 1 << 20)]))
        reply = decode_binary_reply(host.reply())
        kind, dtype, shape, region_id, offset = reply["value"]
        assert (dtype, shape) == ("float32", [16]) and reply["result_regions"] == [region_id]
        rid, pid, rfd, size = reply["regions"][0]
        with open("/proc/%d/fd/%d" % (pid, rfd), "rb") as f:
            data = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
            assert np.frombuffer(data, np.float32, 16, offset).tolist() == [-float(i) for i in range(16)]
            data.close()
    finally:
        region.close()
        os.close(fd)


def _hostile_frames():
    good = binary_call(1, 0, "builtins", ["abs"], [_int_arg(-1)])
    f32 = list(protocol.dtypes.DTYPES).index("float32")
    bf16 = list(protocol.dtypes.DTYPES).index("bfloat16")

    def array(code=f32, rank=1, pad=0, region=1, offset=0, dims=(4,)):
        return (5, struct.pack("<BBHIq", code, rank, pad, region, offset) + struct.pack("<%dq" % len(dims), *dims))

    frames = [("truncated to %d bytes" % n, good[:n]) for n in range(4, len(good))]
    frames += [
        ("trailing bytes", good + b"\x00"),
        ("op 2", good[:4] + b"\x02" + good[5:]),
        ("grad 3", binary_call(1, 0, "builtins", ["abs"], [_int_arg(-1)], grad=3)),
        ("export flags", binary_call(1, 0, "builtins", ["abs"], [_int_arg(-1)], flags=8)),
        ("base 3", binary_call(1, 3, "builtins", ["abs"], [_int_arg(-1)])),
        ("negative id", binary_call(-4, 0, "builtins", ["abs"], [_int_arg(-1)])),
        ("handle 0", binary_call(1, 2, "", [], [], handle=0)),
        ("handle with a name", binary_call(1, 2, "x", [], [], handle=3)),
        ("module with a handle", binary_call(1, 0, "builtins", ["abs"], [], handle=3)),
        ("file with a negative generation", binary_call(1, 1, "/tmp/x.py", [], [], handle=-1)),
        ("name not UTF-8", binary_call(1, 0, "builtins", ["abs"], [])[:40] + b"\xff" * 8 + b"\x03\x00abs"),
        ("attribute count past the end", binary_call(1, 0, "builtins", ["abs"] * 3, [])[:-6]),
        ("argument count past the end", binary_call(1, 0, "builtins", ["abs"], [_int_arg(1)] * 2)[:-9]),
        ("tag 9", binary_call(1, 0, "builtins", ["abs"], [(9, b"")])),
        ("bool byte 2", binary_call(1, 0, "builtins", ["abs"], [(1, b"\x02")])),
        ("dtype code 200", binary_call(1, 0, "builtins", ["id"], [array(code=200)])),
        ("bfloat16 (no NumPy dtype)", binary_call(1, 0, "builtins", ["id"], [array(code=bf16)])),
        ("rank 33", binary_call(1, 0, "builtins", ["id"], [array(rank=33, dims=(1,) * 33)])),
        ("rank past the end", binary_call(1, 0, "builtins", ["id"], [array(rank=5, dims=(1,))])),
        ("negative dimension", binary_call(1, 0, "builtins", ["id"], [array(dims=(-1,))])),
        ("padding", binary_call(1, 0, "builtins", ["id"], [array(pad=1)])),
        ("misaligned offset", binary_call(1, 0, "builtins", ["id"], [array(offset=2)])),
        ("negative offset", binary_call(1, 0, "builtins", ["id"], [array(offset=-64)])),
        ("region never announced", binary_call(1, 0, "builtins", ["id"], [array(region=77)])),
        ("region fd negative", binary_call(1, 0, "builtins", ["abs"], [_int_arg(1)], regions=[(1, -1, 4096)])),
        ("region size 0", binary_call(1, 0, "builtins", ["abs"], [_int_arg(1)], regions=[(1, 3, 0)])),
        ("negative release", binary_call(1, 0, "builtins", ["abs"], [_int_arg(1)], lists=((), (-1,), ()))),
    ]
    return frames


def test_hostile_binary_frames_get_protocol_error_replies_and_the_worker_keeps_serving(host):
    frames = _hostile_frames()
    for what, frame in frames:
        host.post(frame)
        reply = host.reply()
        assert isinstance(reply, dict), what
        assert reply["ok"] is False and reply["protocol"] is True, (what, reply)
    host.post(binary_call(99, 0, "builtins", ["abs"], [_int_arg(-3)]))
    assert decode_binary_reply(host.reply())["value"] == 3
    assert host.proc.poll() is None


def test_an_array_past_the_end_of_its_region_is_refused_in_a_binary_call(host):
    fd = os.memfd_create("interop-request-test", 0)
    os.ftruncate(fd, 4096)
    try:
        array = (5, struct.pack("<BBHIq", list(protocol.dtypes.DTYPES).index("float32"), 1, 0, 1, 4032) + struct.pack("<q", 17))
        host.post(binary_call(1, 0, "builtins", ["id"], [array], regions=[(1, fd, 4096)]))
        reply = host.reply()
        assert reply["ok"] is False and reply["protocol"] is True and "runs past" in reply["error"]["message"]
    finally:
        os.close(fd)


# ---- the call itself: grad modes and keyword arguments -----------------------------------------------------


def test_a_default_call_skips_the_grad_context_and_the_others_enter_it(serving, monkeypatch):
    w, module = serving
    entered = []

    def grad_mode(grad):
        entered.append(grad)
        return contextlib.nullcontext()

    monkeypatch.setattr(w, "grad_mode", grad_mode)

    def pair(a, b=0):
        return a + b

    setattr(module, "pair", pair)
    target = {"base": "module", "name": module.__name__, "attrs": ["pair"]}
    plain = w.handle(protocol.check_request({"v": 1, "op": "call", "id": 1, "target": target,
                                             "args": [{"t": "int", "v": 2}]}))
    assert plain["ok"] and plain["value"] == {"t": "int", "v": 2}
    assert entered == []
    keywords = w.handle(protocol.check_request({"v": 1, "op": "call", "id": 2, "target": target, "grad": "no_grad",
                                                "args": [{"t": "int", "v": 2}], "kw_names": ["b"],
                                                "kw_values": [{"t": "int", "v": 5}]}))
    assert keywords["ok"] and keywords["value"] == {"t": "int", "v": 7}
    assert entered == ["no_grad"]
