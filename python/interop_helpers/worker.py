"""The isolated-mode worker: plain CPython serving one .NET host over its stdin/stdout.

Run as ``python3 -m interop_helpers.worker --host-pid PID`` by the host (src/Interop/Isolated). See
docs/isolated.md for the design; in short:

- Control messages are length-prefixed UTF-8 JSON objects (``protocol.py``), one request at a time; the
  reply carries the request's id. Every field is validated before it is used.
- Tensor payloads travel in shared memory. The host's request region is a file descriptor of the host
  process (a /dev/shm file it unlinked right after creating it), opened here through /proc/PID/fd/N.
  Result regions are ``memfd``s of this process that the host opens the same way. No name is left in
  /dev/shm by this process, so a crash cannot leave shared-memory objects behind.
- Inputs become ``np.frombuffer`` views over the request region (``torch.from_numpy`` for tensors): no
  copy. Results are prepared by ``torch_export.prepare`` (the export policy) and copied once into a
  result region that the host then reads in place (spans, TorchSharp tensors over the mapping).
- The worker exits when its control pipe reaches EOF (the host is gone), when its parent changes (a
  watchdog thread), or through PR_SET_PDEATHSIG where Linux offers it.
"""

import base64
import importlib
import importlib.metadata
import mmap
import os
import sys
import threading
import time
import weakref

from . import calls, protocol
from .protocol import ProtocolError

# The protocol's grad-mode names (validated by protocol.check_request) → calls' grad-mode codes, built once.
_GRAD_CODES = dict(zip(protocol.GRAD_MODES, (calls.GRAD_DEFAULT, calls.NO_GRAD, calls.INFERENCE_MODE)))

MIN_RESULT_REGION = 1 << 20
MAX_FREE_RESULT_REGIONS = 4


def _version(name):
    try:
        return importlib.metadata.version(name)
    except Exception:  # noqa: BLE001 - not installed or broken metadata: report absence
        return None


class _ResultRegion:
    __slots__ = ("id", "fd", "map", "size")

    def __init__(self, region_id, size):
        self.id = region_id
        self.size = size
        flags = getattr(os, "MFD_CLOEXEC", 0)
        self.fd = os.memfd_create("interop-result-%d" % region_id, flags)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def close(self):
        try:
            self.map.close()
        except BufferError:
            pass  # an array still views it; the memory goes when that array does
        os.close(self.fd)


class Worker:
    """The request loop and the worker-side state (handles, regions, loaded modules)."""

    def __init__(self, host_pid):
        self.host_pid = host_pid
        self.handles = {}
        self.next_handle = 1
        self.request_regions = {}
        self.result_regions = {}
        self.free_results = []
        self.next_result = 1
        self._np = None
        self.has_torch = _version("torch") is not None

    # ---- state helpers ------------------------------------------------------------------------

    @property
    def np(self):
        if self._np is None:
            import numpy

            self._np = numpy
        return self._np

    def hello(self):
        return {
            "op": "hello",
            "pid": os.getpid(),
            "python": "%d.%d.%d" % sys.version_info[:3],
            "numpy": _version("numpy"),
            "torch": _version("torch"),
        }

    def resolve(self, ref):
        base = ref["base"]
        if base == "module":
            obj = importlib.import_module(ref["name"])
        elif base == "file":
            obj = self.load_file(ref["name"])
        else:
            try:
                obj = self.handles[ref["handle"]]
            except KeyError:
                raise ProtocolError("handle %r is not live in this worker" % ref["handle"]) from None
        for name in ref["attrs"]:
            obj = getattr(obj, name)
        return obj

    def load_file(self, path):
        """The module of a file: calls.load_file's rules (run once, again only when the file changed; its folder importable)."""
        return calls.load_file(path)

    def map_request_regions(self, regions):
        for region in regions:
            path = "/proc/%d/fd/%d" % (self.host_pid, region["fd"])
            fd = os.open(path, os.O_RDWR)
            try:
                if os.fstat(fd).st_size < region["size"]:
                    raise ProtocolError("region %d is smaller than announced" % region["id"])
                self.request_regions[region["id"]] = mmap.mmap(fd, region["size"], mmap.MAP_SHARED)
            finally:
                os.close(fd)

    def result_region(self, size):
        best = None
        for region in self.free_results:
            if region.size >= size and (best is None or region.size < best.size):
                best = region
        if best is not None:
            self.free_results.remove(best)
            return best, False
        size = max(MIN_RESULT_REGION, 1 << (max(size, 1) - 1).bit_length())
        region = _ResultRegion(self.next_result, size)
        self.next_result += 1
        self.result_regions[region.id] = region
        return region, True

    def release_results(self, ids, closed):
        for region_id in ids:
            region = self.result_regions.get(region_id)
            if region is None or region in self.free_results:
                continue  # unknown or released twice: ignore rather than trust it
            self.free_results.append(region)
        while len(self.free_results) > MAX_FREE_RESULT_REGIONS:
            region = min(self.free_results, key=lambda r: r.size)
            self.free_results.remove(region)
            del self.result_regions[region.id]
            region.close()
            closed.append(region.id)

    # ---- values -------------------------------------------------------------------------------

    def decode(self, value, arrays):
        kind = value["t"]
        if kind in ("none", "bool", "int", "float", "str", "bytes"):
            return value.get("v")
        if kind in ("list", "tuple"):
            items = [self.decode(v, arrays) for v in value["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {k: self.decode(v, arrays) for k, v in zip(value["keys"], value["items"])}
        if kind == "object":
            return self.resolve(value["ref"])
        # tensor / ndarray over the request region (validated by protocol.check_value)
        region = self.request_regions.get(value["region"])
        if region is None:
            raise ProtocolError("tensor refers to region %r, which was not announced" % value["region"])
        array = protocol.view_array(self.np, region, value)
        arrays.append(weakref.ref(array))
        if kind == "ndarray" or (kind == "array" and not self.has_torch):
            return array
        import torch

        return torch.from_numpy(array)

    def encode(self, value, pending, export, depth=0):
        # The host refuses deeper replies as a protocol breach (and replaces the worker): say so here instead, with the
        # ValueError an in-process session raises (calls.export_tree).
        calls.check_depth(depth)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
            value = value.item()  # NumPy scalars (np.float32(1.5), np.bool_) travel as Python scalars
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool):
            return {"t": "bool", "v": value}
        if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
            return {"t": "int", "v": value}
        if isinstance(value, float):
            return {"t": "float", "v": protocol.float_text(value)}
        if isinstance(value, str):
            return {"t": "str", "v": protocol.check_text(value)}
        if isinstance(value, bytes):
            return {"t": "bytes", "v": base64.b64encode(value).decode("ascii")}
        if isinstance(value, (list, tuple)):
            return {"t": "list" if isinstance(value, list) else "tuple",
                    "items": [self.encode(v, pending, export, depth + 1) for v in value]}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"t": "dict", "keys": [protocol.check_text(k) for k in value],
                    "items": [self.encode(v, pending, export, depth + 1) for v in value.values()]}
        if isinstance(value, dict):
            # Other keys (ints, tuples, ...) travel as values, so .NET reads them as in-process: typed keys.
            return {"t": "dict", "keys": [], "key_values": [self.encode(k, pending, export, depth + 1) for k in value],
                    "items": [self.encode(v, pending, export, depth + 1) for v in value.values()]}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            from . import torch_export

            calls.check_rank(value.dim())
            return self.pending_array(torch_export.export(value, detach=export["detach"], upcast=export["upcast"]),
                                      "tensor", pending)
        if np is not None and isinstance(value, np.ndarray):
            calls.check_rank(value.ndim)
        if np is not None and isinstance(value, np.ndarray) and not value.dtype.isnative and value.dtype.kind in "biufc":
            value = calls.native_order(value)  # big-endian: native, as in-process (calls.export_tree)
        if np is not None and isinstance(value, np.ndarray) and value.dtype.isbuiltin and value.dtype.kind in "biufc":
            return self.pending_array(value, "ndarray", pending)
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = value
        return {"t": "object", "handle": handle, "type": type(value).__module__ + "." + type(value).__qualname__,
                "repr": protocol.short_repr(value)}

    def pending_array(self, array, kind, pending):
        name = protocol.dtype_name(array.dtype)
        entry = {"t": kind, "dtype": name, "shape": list(array.shape), "offset": 0, "region": 0}
        pending.append((entry, array))
        return entry

    def place_arrays(self, pending, reply):
        total = 0
        for entry, array in pending:
            total = protocol.align(total)
            entry["offset"] = total
            total += array.nbytes
        if not pending:
            return
        region, new = self.result_region(total)
        if new:
            reply["regions"].append({"id": region.id, "pid": os.getpid(), "fd": region.fd, "size": region.size})
        np = self.np
        for entry, array in pending:
            entry["region"] = region.id
            if array.nbytes:
                dest = np.frombuffer(region.map, dtype=array.dtype, count=array.size, offset=entry["offset"])
                np.copyto(dest.reshape(array.shape), array, casting="no")
                del dest
        reply["result_regions"].append(region.id)

    # ---- requests -----------------------------------------------------------------------------

    def handle(self, request):
        """The reply to a checked request; a failed call's error reply still reports closed and retained regions."""
        reply = {"id": request["id"], "ok": True, "regions": [], "result_regions": [], "closed": [], "retained": []}
        arrays = []
        failure = None
        try:
            self._handle(request, reply, arrays)
        except BaseException as e:  # noqa: BLE001 - every Python error (SystemExit too) goes back to the host
            failure = protocol.error_reply(request["id"], e, protocol_error=isinstance(e, ProtocolError))
            del e
        # After the call: the host may release a handle (its reference was collected) in the very request that uses it.
        for h in request["release_handles"]:
            self.handles.pop(h, None)
        # Outside the except block, so that the traceback no longer keeps the call's inputs alive.
        reply["retained"] = self.retained(arrays)
        if failure is None:
            return reply
        failure["closed"], failure["retained"] = reply["closed"], reply["retained"]
        return failure

    def _handle(self, request, reply, arrays):
        self.release_results(request["release_regions"], reply["closed"])
        for region_id in request["drop_regions"]:
            self.request_regions.pop(region_id, None)
        self.map_request_regions(request["regions"])
        op = request["op"]
        if op == "ping":
            reply["value"] = {"t": "none"}
            return
        pending = []
        grad = request["grad"]
        with self.grad_mode(grad):
            target = self.resolve(request["target"])
            if op == "resolve":
                result = target
            else:
                args = [self.decode(a, arrays) for a in request["args"]]
                kwargs = {k: self.decode(v, arrays) for k, v in zip(request["kw_names"], request["kw_values"])}
                result = target(*args, **kwargs)
                del args, kwargs
            del target
            if op == "resolve":
                # A module or file path answers with its type only (any worker can resolve it again); an attribute
                # of a worker object gets its own handle, so it outlives the reference it came from.
                handle = 0
                if request["target"]["base"] == "handle":
                    handle = self.next_handle
                    self.next_handle += 1
                    self.handles[handle] = result
                reply["value"] = {"t": "object", "handle": handle, "repr": protocol.short_repr(result),
                                  "type": type(result).__module__ + "." + type(result).__qualname__}
            else:
                reply["value"] = self.encode(result, pending, request["export"])
            del result
        self.place_arrays(pending, reply)

    def retained(self, arrays):
        """Request regions whose arrays outlived the call: the host must not reuse them."""
        alive = [ref() for ref in arrays]
        kept = set()
        for array in alive:
            if array is None:
                continue
            base = array
            while getattr(base, "base", None) is not None:
                base = base.base
            base = getattr(base, "obj", base)  # np.frombuffer keeps a memoryview of the mmap (NumPy < 2)
            for region_id, region in self.request_regions.items():
                if base is region:
                    kept.add(region_id)
        for region_id in kept:
            # The arrays keep the mapping alive; the worker forgets it, the host allocates a new one.
            del self.request_regions[region_id]
        return sorted(kept)

    @staticmethod
    def grad_mode(grad):
        return calls.grad_context(_GRAD_CODES[grad])

    def serve(self, reader, writer):
        protocol.write_message(writer, self.hello())
        while True:
            raw = protocol.read_message(reader)
            if raw is None:
                return 0
            try:
                request = protocol.check_request(raw)
            except ProtocolError as e:
                protocol.write_message(writer, protocol.error_reply(raw.get("id") if isinstance(raw, dict) else None,
                                                                    e, protocol_error=True))
                continue
            if request["op"] == "shutdown":
                protocol.write_message(writer, {"id": request["id"], "ok": True, "value": {"t": "none"},
                                                "regions": [], "result_regions": [], "closed": [], "retained": []})
                return 0
            try:
                reply = self.handle(request)
            except ProtocolError as e:
                reply = protocol.error_reply(request["id"], e, protocol_error=True)
            except BaseException as e:  # noqa: BLE001 - every Python error (SystemExit too) goes back to the host
                reply = protocol.error_reply(request["id"], e)
                del e
            protocol.write_message(writer, reply)


def _watch_parent(host_pid):
    """Exits the worker when its host is gone, even while the main thread is busy in Python code."""
    if hasattr(os, "getppid"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL (the host starts workers from a thread that lives as long as it does)
        except (OSError, AttributeError):
            pass

    def watch():
        while True:
            if os.getppid() != host_pid:
                os._exit(0)
            time.sleep(0.2)

    if os.getppid() != host_pid:
        os._exit(0)
    threading.Thread(target=watch, name="interop-parent-watch", daemon=True).start()


def _detach_protocol_on_fork(*fds):
    """Points the protocol descriptors of a forked child (multiprocessing, DataLoader workers) at /dev/null.

    A child that kept them would hold the control pipe open after this worker died, and the host would wait for the
    child instead of seeing EOF; it could also write into the protocol stream."""

    def in_child():
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in fds:
            os.dup2(devnull, fd, inheritable=False)
        os.close(devnull)

    os.register_at_fork(after_in_child=in_child)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--host-pid":
        print("usage: python -m interop_helpers.worker --host-pid PID", file=sys.stderr)
        return 2
    host_pid = int(argv[1])
    import faulthandler

    faulthandler.enable()  # a segfault prints the Python stack to stderr, which the host keeps for its exception
    # The protocol owns the original stdin/stdout; user code's print() goes to stderr, input() sees EOF.
    reader = os.fdopen(os.dup(0), "rb", buffering=0)
    writer = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    _detach_protocol_on_fork(reader.fileno(), writer.fileno())
    _watch_parent(host_pid)
    try:
        return Worker(host_pid).serve(reader, writer)
    except ProtocolError as e:
        print("interop worker: %s; exiting" % e, file=sys.stderr)
        return 3
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
