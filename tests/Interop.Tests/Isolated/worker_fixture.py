"""Functions the isolated-mode tests call in the worker process (loaded with PythonSession.LoadFile)."""
import ctypes
import os
import struct
import time

_kept = []


def segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def exit_now(code):
    os._exit(code)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def pid():
    return os.getpid()


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def undecodable_name(fail):
    """A file name that is not UTF-8, as os.listdir returns it (surrogateescape): returned, or in an exception."""
    name = os.fsdecode(b"caf\xe9.txt")
    if fail:
        raise FileNotFoundError(2, "No such file", name)
    return {"name": name}


def raise_value_error(message):
    raise ValueError(message)


def scale(t, factor=2.0):
    """torch tensor in, torch tensor out: t * factor."""
    return t * factor


def describe(t):
    return {"type": type(t).__module__ + "." + type(t).__name__, "dtype": str(t.dtype), "shape": list(t.shape),
            "sum": float(t.double().sum()) if t.numel() else 0.0, "writeable": bool(t.numpy().flags.writeable)}


def same(x, *rest):
    """The first argument back (a binary call's reply carries it: docs/isolated.md, "Binary calls")."""
    return x


def dtype_of(x, *rest):
    """What the worker received: the array's type and dtype, and the types and values of the scalars after it."""
    return "%s %s %r" % (type(x).__name__, x.dtype, [(type(r).__name__, r) for r in rest])


def keep(t):
    """Keeps the argument beyond the call (its shared region must not be reused)."""
    _kept.append(t)
    return len(_kept)


def keep_then_raise(t):
    """Keeps the argument, then fails: the region must not be reused although the call raised."""
    _kept.append(t)
    raise ValueError("kept %d" % len(_kept))


def kept_sum(index):
    return float(_kept[index].double().sum())


def view_of(t, how):
    """The argument returned as it came, changed in place, as a contiguous view, or kept as well (a result over its
    request region, answered there when large unless Python keeps it)."""
    if how == "same":
        return t
    if how == "doubled_in_place":
        return t.mul_(2)
    if how == "tail":
        return t.reshape(-1)[3:]
    if how == "kept":
        _kept.append(t)
        return t
    if how == "kept_view":
        _kept.append(t[:])  # a view: for an ndarray its base is the array under the one the worker decoded
        return t
    raise ValueError(how)


def change_kept(index, value):
    """Fills a kept argument with ``value`` (a result answered from its request region would change with it)."""
    kept = _kept[index]
    kept.fill_(value) if hasattr(kept, "fill_") else kept.fill(value)


def lie_in_request(x=None, as_list=False):
    """Returns ``x`` (or 4 zeros; in a list when ``as_list``: a JSON reply), but the reply falsely says its result lies
    in a request region (region 1000 + the result region's id, which no request used): a breach of the protocol that
    the host must refuse."""
    import numpy as np
    from interop_helpers import output

    worker = output._allocator.__self__
    place = worker.place_arrays

    def lying(pending, reply):
        worker.place_arrays = place
        place(pending, reply)
        reply["result_in_request"] = True
        reply["result_regions"] = [1000 + r for r in reply["result_regions"]]
        for entry, _ in pending:
            entry["region"] += 1000

    worker.place_arrays = lying
    value = x if x is not None else np.zeros(4, np.float32)
    return [value, 1] if as_list else value


def make(kind, depth=0):
    import torch

    if kind == "bfloat16":
        return torch.ones(3, dtype=torch.bfloat16)
    if kind == "grad":
        return torch.ones(3, requires_grad=True) * 2
    if kind == "strided":
        return torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    if kind == "numpy":
        import numpy as np

        return np.arange(6, dtype=np.int32).reshape(2, 3)
    if kind == "several":
        return (torch.arange(3, dtype=torch.int64), "label", [torch.zeros(2, 2, dtype=torch.float64), 2.5])
    if kind == "big_endian":
        import numpy as np

        return np.arange(6, dtype=">i4").reshape(2, 3)
    if kind == "nested":
        value = 7
        for _ in range(depth):
            value = [value]
        return value
    if kind == "mebibytes":
        return torch.zeros(depth << 18, dtype=torch.float32)
    if kind == "big":
        return torch.arange(1 << 22, dtype=torch.float32)  # 16 MiB
    raise ValueError(kind)


class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value += n
        return self.value


def grad_enabled():
    import torch

    return torch.is_grad_enabled()



def fork_then_exit(pid_file, seconds):
    """Forks a child that outlives this worker (as multiprocessing and DataLoader workers do), then dies."""
    child = os.fork()
    if child == 0:
        time.sleep(seconds)
        os._exit(0)
    with open(pid_file, "w") as f:
        f.write(str(child))
    os._exit(5)


def live_counters():
    import gc

    gc.collect()
    return sum(type(o) is Counter for o in gc.get_objects())


def big_int8(n, tensor=False):
    """n int8 zeros (np.zeros: no RAM until touched) with 7 first and 1..16 as the last 16 elements."""
    import numpy as np

    a = np.zeros(n, np.int8)
    a[0] = 7
    a[-16:] = np.arange(1, 17, dtype=np.int8)
    if tensor:
        import torch

        return torch.from_numpy(a)
    return a


def ends(t, k):
    """The element count, the first k and the last k elements of a 1-d argument (the rest is not read)."""
    return [int(t.numel()), t[:k].tolist(), t[-k:].tolist()]


def rows(t, indices):
    """t[indices] as nested lists (reads only those rows of a large argument)."""
    return t[list(indices)].tolist()


def _own_control_block():
    """This worker's control block as its host shares it (the mapping, and its 32-bit words), opened through the
    host's descriptor named on the worker's command line."""
    import mmap
    import sys

    from interop_helpers import protocol

    host = int(sys.argv[sys.argv.index("--host-pid") + 1])
    fd = int(sys.argv[sys.argv.index("--control-fd") + 1])
    handle = os.open("/proc/%d/fd/%d" % (host, fd), os.O_RDWR)
    block = mmap.mmap(handle, protocol.CONTROL_SIZE, mmap.MAP_SHARED)
    os.close(handle)
    return block, memoryview(block).cast("I")


def scribble_control(kind):
    """Writes into this worker's control block as a hostile worker could, then waits: the host must refuse the reply."""
    from interop_helpers import protocol

    block, words = _own_control_block()
    if kind.startswith("binary"):
        # A binary reply (docs/isolated.md, "Binary calls") for the request now running: cut short, or naming a
        # result region that was never announced.
        import json

        request_id = json.loads(bytes(block[4096:4096 + words[18]]))["id"]  # this call's request (JSON: a str argument)
        value = struct.pack("<BBHIq", 11, 1, 0, 999, 0) + struct.pack("<q", 4)
        body = struct.pack("<4sBBHqHHHH", b"INB1", 1, 4, 0, request_id, 0, 1, 0, 0) + value + struct.pack("<q", 999)
        if kind == "binary-truncated":
            body = body[:30]
        start = 4096 + protocol.CONTROL_AREA
        block[start:start + len(body)] = body
        words[34] = len(body)
        words[32] = words[16]
    elif kind == "sequence":
        words[32] = (words[16] + 1000) & 0xFFFFFFFF  # neither the previous reply's number nor this request's
    elif kind == "length":
        words[34] = 0x7FFFFFFF  # far past the reply area
        words[32] = words[16]
    time.sleep(30)


def scale_in_place(x, factor):
    """The result written straight into a result region (interop_helpers.output.empty): no copy on the way out."""
    import torch
    from interop_helpers import output

    out = output.empty(x.shape, x.dtype)
    torch.mul(x, factor, out=out)
    return out


def in_place_and_copied(x):
    """One array written in place and one ordinary result in the same reply (the second is copied after the first)."""
    from interop_helpers import output

    first = output.empty(x.shape, "float32", kind="ndarray")
    first[...] = x.numpy() if hasattr(x, "numpy") else x
    return [first, x * 3]


def keep_output(x):
    """An output.empty array that the worker keeps after returning it: its region must never be handed out again."""
    from interop_helpers import output

    out = output.empty(x.shape, x.dtype)
    out.copy_(x)
    _kept_outputs.append(out)
    return out


def kept_outputs():
    """The kept outputs' values, as lists (they must still hold what was written: no later result reused the region)."""
    return [t.tolist() for t in _kept_outputs]


_kept_outputs = []


def environment(name):
    """A variable of the worker's environment (None when unset)."""
    import os

    return os.environ.get(name)


def pattern_check(t):
    """The argument's float32 elements against i * 0.5 - 3 (the pattern the host wrote): the first index that differs, or -1."""
    import torch

    expected = torch.arange(t.numel(), dtype=torch.float64).mul_(0.5).sub_(3).to(torch.float32)
    wrong = (t.reshape(-1) != expected).nonzero()
    return int(wrong[0, 0]) if wrong.numel() else -1


def data_address(t):
    """Where the argument's elements lie in this process (its request region), and its first element."""
    return [t.data_ptr(), float(t.reshape(-1)[0])]



def ring_host_then(action, delay, rings=1):
    """Rings the host's reply futex as wake_host_ahead does (each time the host sleeps), without replying; after
    ``delay`` seconds dies (SIGKILL) or answers with the number of rings."""
    import signal

    from interop_helpers import protocol

    block, words = _own_control_block()
    futex = protocol._Futex()
    reply_seq = ctypes.addressof(ctypes.c_char.from_buffer(block)) + 4 * 32
    for _ in range(rings):
        while not words[33]:  # the host's waiting flag
            time.sleep(0.0005)
        futex.wake(reply_seq)
        time.sleep(0.001)
    time.sleep(delay)
    if action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return rings
