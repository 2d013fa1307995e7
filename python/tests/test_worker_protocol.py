"""The isolated-mode worker: request validation, and a real worker process fed hostile messages.

The worker is started the way the .NET host starts it (``python -m interop_helpers.worker --host-pid PID``), with
this test process as its host: request regions are memfds of this process, which the worker opens through
/proc/PID/fd/N exactly as it opens the host's.
"""
import json
import mmap
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PYTHON_DIR))
from interop_helpers import protocol  # noqa: E402
from interop_helpers.protocol import ProtocolError  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"),
                                reason="isolated mode needs Linux (memfd, /proc/PID/fd)")


def call(args, region=None, op="call", **extra):
    request = {"v": 1, "id": 1, "op": op, "target": {"base": "module", "name": "builtins", "attrs": ["len"]}, "args": args}
    if region is not None:
        request["regions"] = [region]
    request.update(extra)
    return request


def array(dtype="float32", shape=(4,), offset=0, region=1, kind="ndarray"):
    return {"t": kind, "dtype": dtype, "shape": list(shape), "offset": offset, "region": region}


# ---- validation alone -----------------------------------------------------------------------------------


@pytest.mark.parametrize("request_, named", [
    ({"v": 2, "id": 1, "op": "ping"}, "version"),
    ({"v": 1, "id": -1, "op": "ping"}, "id"),
    ({"v": 1, "id": True, "op": "ping"}, "id"),
    ({"v": 1, "id": 1, "op": "exec"}, "unknown op"),
    (call([array(dtype="float128")]), "dtype"),
    (call([array(dtype="bfloat16")]), "dtype"),
    (call([array(shape=(-1,))]), "dimension"),
    (call([array(shape=(1 << 49,))]), "dimension"),
    (call([array(shape=[1] * 33)]), "rank"),
    (call([array(offset=-8)]), "offset"),
    (call([array(offset=2)]), "multiple of the item size"),
    (call([{"t": "int", "v": 1 << 64}]), "int value"),
    (call([{"t": "float", "v": 1.5}]), "float value must be text"),
    (call([{"t": "code", "v": "os.system('x')"}]), "unknown value type"),
    (call([], kw_names=["a"], kw_values=[]), "kw_names"),
    (call([], grad="maybe"), "grad"),
    (call([], region={"id": 1, "fd": -1, "size": 10}), "region fd"),
    (call([], region={"id": 1, "fd": 3, "size": 0}), "region size"),
    (call([], target={"base": "eval", "name": "x"}), "reference base"),
    (call([], target={"base": "file", "name": "/tmp/x.py", "generation": -1}), "generation"),
    (call([], target={"base": "file", "name": "/tmp/x.py", "generation": True}), "generation"),
    (call([], target={"base": "file", "name": "/tmp/x.py", "generation": 1.0}), "generation"),
    (call([], target={"base": "file", "name": "/tmp/x.py", "generation": None}), "generation"),
    (call([], target={"base": "file", "name": "/tmp/x.py", "generation": 1 << 63}), "generation"),
    (call([{"t": "object", "ref": {"base": "file", "name": "/tmp/x.py", "generation": "3"}}]), "generation"),
])
def test_check_request_refuses(request_, named):
    with pytest.raises(ProtocolError, match=named):
        protocol.check_request(request_)


def test_deep_nesting_is_refused():
    value = {"t": "none"}
    for _ in range(40):
        value = {"t": "list", "items": [value]}
    with pytest.raises(ProtocolError, match="nested"):
        protocol.check_request(call([value]))


def test_view_array_checks_the_extent_against_the_region():
    region = mmap.mmap(-1, 4096)
    ok = protocol.check_value(array(dtype="float64", shape=(2, 4), offset=4096 - 64))
    view = protocol.view_array(np, region, ok)
    assert view.shape == (2, 4)
    for bad in (array(offset=4096), array(shape=(1025,)), array(dtype="float64", shape=(2, 4), offset=4096 - 56)):
        with pytest.raises(ProtocolError, match="runs past"):
            protocol.view_array(np, region, protocol.check_value(bad))


def test_view_array_carries_64_bit_sizes_and_offsets():
    # A sparse anonymous mapping of 2**31 + 4096 bytes: nothing is touched but the pages read here.
    size = (1 << 31) + 4096
    region = mmap.mmap(-1, size)
    whole = protocol.view_array(np, region, protocol.check_value(array(dtype="int8", shape=((1 << 31) + 16,), offset=0)))
    assert whole.shape == ((1 << 31) + 16,)
    region[(1 << 31) + 15] = 9
    assert whole[-1] == 9
    far = protocol.view_array(np, region, protocol.check_value(array(dtype="float32", shape=(4,), offset=1 << 31)))
    assert far.shape == (4,) and far.ctypes.data - whole.ctypes.data == 1 << 31
    with pytest.raises(ProtocolError, match="runs past"):
        protocol.view_array(np, region, protocol.check_value(array(dtype="int8", shape=(size + 1,), offset=0)))
    del whole, far
    region.close()


def test_float_text_round_trips_exactly():
    for x in (0.1, -2.5e-308, 1e308, float("inf"), float("-inf")):
        assert protocol.parse_float(protocol.float_text(x)) == x
    assert protocol.parse_float("NaN") != protocol.parse_float("NaN")


# ---- a real worker ----------------------------------------------------------------------------------------


class Worker:
    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
        self.proc = subprocess.Popen([sys.executable, "-m", "interop_helpers.worker", "--host-pid", str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.hello = self.read()

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message):
        body = json.dumps(message).encode()
        self.send_raw(struct.pack("<I", len(body)) + body)
        return self.read()

    def read(self):
        header = self.proc.stdout.read(4)
        if len(header) < 4:
            return None
        (n,) = struct.unpack("<I", header)
        return json.loads(self.proc.stdout.read(n))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            s.close()


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.close()


@pytest.fixture
def region():
    fd = os.memfd_create("interop-test", os.MFD_CLOEXEC)
    os.ftruncate(fd, 4096)
    m = mmap.mmap(fd, 4096)
    yield fd, m
    m.close()
    os.close(fd)


def test_hello_names_the_worker_and_versions_without_importing_torch(worker):
    hello = worker.hello
    assert hello["op"] == "hello" and hello["v"] == 1
    assert hello["pid"] == worker.proc.pid
    assert hello["python"] == "%d.%d.%d" % sys.version_info[:3]


def test_a_valid_array_is_read_in_place_from_the_hosts_region(worker, region):
    fd, m = region
    np.frombuffer(m, dtype=np.float32, count=4, offset=64)[:] = [1, 2, 3, 4]
    reply = worker.send(call([array(offset=64)], region={"id": 1, "fd": fd, "size": 4096},
                             target={"base": "module", "name": "numpy", "attrs": ["sum"]}))
    assert reply["ok"], reply
    assert protocol.parse_float(reply["value"]["v"]) == 10.0


@pytest.mark.parametrize("argument, named", [
    (array(offset=4096), "runs past"),
    (array(shape=(1025,)), "runs past"),
    (array(region=7), "not announced"),
    (array(dtype="object"), "dtype"),
])
def test_hostile_arrays_are_refused_and_the_worker_keeps_serving(worker, region, argument, named):
    fd, m = region
    before = bytes(m)
    reply = worker.send(call([argument], region={"id": 1, "fd": fd, "size": 4096}))
    assert not reply["ok"] and reply["protocol"], reply
    assert named in reply["error"]["message"]
    assert bytes(m) == before, "the region was not written"
    assert worker.send({"v": 1, "id": 2, "op": "ping"})["ok"]


def test_a_region_larger_than_its_file_is_refused(worker, region):
    fd, _ = region
    reply = worker.send(call([], region={"id": 1, "fd": fd, "size": 1 << 20}))
    assert not reply["ok"] and "smaller than announced" in reply["error"]["message"]


def test_invalid_json_is_answered_and_a_bad_frame_ends_the_worker(worker):
    body = b"{not json"
    worker.send_raw(struct.pack("<I", len(body)) + body)
    reply = worker.read()
    assert reply["protocol"] and "JSON" in reply["error"]["message"]
    worker.send_raw(struct.pack("<I", protocol.MAX_MESSAGE + 1))
    assert worker.read() is None
    assert worker.proc.wait(10) == 3


def test_the_worker_exits_when_its_control_pipe_closes(worker):
    worker.proc.stdin.close()
    assert worker.proc.wait(10) == 0


def test_int_arguments_span_int64_and_uint64_and_nothing_beyond():
    for v in (-(1 << 63), (1 << 63) - 1, (1 << 64) - 1):
        assert protocol.check_value({"t": "int", "v": v}) == {"t": "int", "v": v}
    for v in (-(1 << 63) - 1, 1 << 64):
        with pytest.raises(protocol.ProtocolError):
            protocol.check_value({"t": "int", "v": v})


def test_the_protocol_limits_are_the_calls_limits():
    from interop_helpers import calls

    assert (protocol.MAX_DEPTH, protocol.MAX_RANK) == (calls.MAX_DEPTH, calls.MAX_RANK)
