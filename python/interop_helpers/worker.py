"""The isolated-mode worker: plain CPython serving one .NET host over its stdin/stdout.

Run as ``python3 -m interop_helpers.worker --host-pid PID`` by the host (src/Interop/Isolated). See
docs/isolated.md for the design; in short:

- Control messages are length-prefixed UTF-8 JSON objects (``protocol.py``), one request at a time; the
  reply carries the request's id. Small calls (scalars and arrays) and their replies use a binary frame
  instead (``protocol.check_binary_request`` / ``encode_binary_reply``). Every field is validated before it
  is used.
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

from . import calls, output, protocol
from .protocol import ProtocolError

# The protocol's grad-mode names (validated by protocol.check_request) → calls' grad-mode codes, built once.
_GRAD_CODES = dict(zip(protocol.GRAD_MODES, (calls.GRAD_DEFAULT, calls.NO_GRAD, calls.INFERENCE_MODE)))

_MAX_DEPTH = calls.MAX_DEPTH
_REPLY_LISTS = ("regions", "result_regions", "closed", "retained")
# Results of at least this many bytes wake a sleeping host before they are copied (the host's WorkerProcess.WakeAheadBytes).
WAKE_AHEAD_BYTES = 64 << 10
# Results of at least this many bytes that all lie in the call's request region (the arguments themselves, or
# C-contiguous views of them) are answered where they are: the host leases that region to the result, and nothing is
# copied back.
IN_REQUEST_BYTES = 64 << 10
MIN_RESULT_REGION = 1 << 20
MAX_FREE_RESULT_REGIONS = 4


def _version(name):
    try:
        return importlib.metadata.version(name)
    except Exception:  # noqa: BLE001 - not installed or broken metadata: report absence
        return None


def _mapping_address(np, mapping):
    """The address of an mmap's first byte (for telling whether an array lies inside it)."""
    probe = np.frombuffer(mapping, np.uint8, count=1)
    address = probe.__array_interface__["data"][0]
    del probe  # the mapping keeps no export: it can still be closed
    return address


class _ResultRegion:
    __slots__ = ("id", "fd", "map", "size", "announced", "kept", "_address")

    def __init__(self, region_id, size):
        self.id = region_id
        self.size = size
        self.announced = False  # the host learns of a region in the first reply that uses it
        self.kept = False  # Python kept an output array of it after the call: never reused, closed once released
        self._address = None
        flags = getattr(os, "MFD_CLOEXEC", 0)
        self.fd = os.memfd_create("interop-result-%d" % region_id, flags)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def address(self, np):
        """The mapping's base address (for telling whether an array lies inside it)."""
        if self._address is None:
            self._address = _mapping_address(np, self.map)
        return self._address

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
        self.request_bases = {}  # request region id -> its mapping's address (for telling whether a result lies inside)
        self.call_region = None  # the request region of the running call's array arguments (None: it has none)
        self.in_request = None  # (region id, mapping, entries) while the running call's reply answers in that region
        self.in_request_bytes = IN_REQUEST_BYTES  # benchmarks raise it to measure the copy back that it saves
        self.result_regions = {}
        self.free_results = []
        self.next_result = 1
        self.files = {}
        self.out = None  # the result region of the running call's output.empty arrays (None: none asked for yet)
        self.out_used = 0
        self.out_arrays = []
        self.wake_host_ahead = None  # the control channel's, while serving through the control block
        self.copied_bytes = 0  # bytes copied into result regions (tests check that output.empty results add none)
        self._np = None
        self._torch_export = None
        self.has_torch = _version("torch") is not None
        output._allocator = self.allocate_output  # output.empty: arrays inside the running call's result region

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
            obj = self.load_file(ref["name"], ref.get("generation", 0))
        else:
            try:
                obj = self.handles[ref["handle"]]
            except KeyError:
                raise ProtocolError("handle %r is not live in this worker" % ref["handle"]) from None
        for name in ref["attrs"]:
            obj = getattr(obj, name)
        return obj

    def load_file(self, path, generation=0):
        """The module of a file: calls.load_file's rules (run once, again only when the file changed; its folder importable).

        The host's ``LoadFile`` gives each load a new ``generation`` (a positive number) that its calls repeat. The file
        is checked (one stat: modification time and size, about 2.5 us on a VM) the first time this worker sees a
        generation newer than the last it checked, so the calls of a loaded file make no file-system call; a file that
        changes between two loads runs again at the next call of the later one, in any worker. Generation 0 (no load
        behind it) checks every time. ``calls.load_file`` itself resolves the path and stats it several times (about
        45 us), so the worker answers from the module it keeps with the file's stamp while that stamp still holds and
        the module is still the one in ``sys.modules``."""
        known = self.files.get(path)
        if known is not None and generation and known[2] >= generation and sys.modules.get(known[1].__name__) is known[1]:
            return known[1]
        try:
            stat = os.stat(path)
        except OSError:
            stat = None
        if known is not None and stat is not None:
            stamp, module, checked = known
            if (stat.st_mtime_ns, stat.st_size) == stamp and sys.modules.get(module.__name__) is module:
                self.files[path] = (stamp, module, max(checked, generation))
                return module
        # The stamp is taken before loading: a file that changes meanwhile shows a different stamp on the next check.
        # A load that raises keeps the entry: calls.load_file puts the previous module back in sys.modules, and the
        # calls of the earlier loads keep running it (as in-process), while this generation checks again at each call.
        module = calls.load_file(path)
        if stat is not None:
            self.files[path] = ((stat.st_mtime_ns, stat.st_size), module, generation)
        else:
            self.files.pop(path, None)
        return module

    def map_request_regions(self, regions):
        for region in regions:
            path = "/proc/%d/fd/%d" % (self.host_pid, region["fd"])
            fd = os.open(path, os.O_RDWR)
            try:
                if os.fstat(fd).st_size < region["size"]:
                    raise ProtocolError("region %d is smaller than announced" % region["id"])
                self.request_regions[region["id"]] = mmap.mmap(fd, region["size"], mmap.MAP_SHARED)
                self.request_bases.pop(region["id"], None)
            finally:
                os.close(fd)

    def result_region(self, size):
        best = None
        for region in self.free_results:
            if region.size >= size and (best is None or region.size < best.size):
                best = region
        if best is not None:
            self.free_results.remove(best)
            return best
        size = max(MIN_RESULT_REGION, 1 << (max(size, 1) - 1).bit_length())
        region = _ResultRegion(self.next_result, size)
        self.next_result += 1
        self.result_regions[region.id] = region
        return region

    def release_results(self, ids, closed):
        for region_id in ids:
            region = self.result_regions.get(region_id)
            if region is None or region in self.free_results or region is self.out:
                continue  # unknown or released twice: ignore rather than trust it
            if region.kept:
                self.drop_region(region, closed)  # Python still views it: never handed out again
                continue
            self.free_results.append(region)
        while len(self.free_results) > MAX_FREE_RESULT_REGIONS:
            region = min(self.free_results, key=lambda r: r.size)
            self.free_results.remove(region)
            self.drop_region(region, closed)

    def drop_region(self, region, closed):
        del self.result_regions[region.id]
        region.close()
        if region.announced:
            closed.append(region.id)

    # ---- output.empty: results written in place ------------------------------------------------

    def allocate_output(self, shape, dtype):
        """An ndarray inside the running call's output region, or None (output.empty then makes an ordinary one)."""
        np = self.np
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if self.out is None:
            self.out = self.result_region(nbytes)
            self.out_used = 0
        start = protocol.align(self.out_used)
        if start + nbytes > self.out.size:
            return None
        self.out_used = start + nbytes
        if count == 0:
            return np.empty(shape, dtype)
        array = np.frombuffer(self.out.map, dtype=dtype, count=count, offset=start).reshape(shape)
        self.out_arrays.append(weakref.ref(array))
        return array

    def finish_output(self, reply, closed):
        """After the reply is built: the output region goes back to the pool unless the reply uses it; a region whose
        arrays Python kept is never handed out again."""
        region, arrays = self.out, self.out_arrays
        self.out, self.out_used, self.out_arrays = None, 0, []
        if region is None:
            return
        kept = any(ref() is not None for ref in arrays)
        if region.id in reply.get("result_regions", ()):
            region.kept = kept  # the host returns it later (release_results)
        elif kept:
            self.drop_region(region, closed)
        else:
            self.free_results.append(region)

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
        # The weak reference goes to the frombuffer array under the reshape: NumPy gives every further view (x[:],
        # x.T, ...) that array as its base, so a view Python keeps holds it alive even after ``array`` is gone.
        base = array.base
        arrays.append(weakref.ref(base if type(base) is self.np.ndarray else array))
        self.call_region = value["region"]  # the host writes all of a request's arrays into one region
        if kind == "ndarray" or (kind == "array" and not self.has_torch):
            return array
        torch = sys.modules.get("torch")  # a dictionary lookup per call instead of the import statement
        if torch is None:
            import torch
        return torch.from_numpy(array)

    def encode(self, value, pending, export, depth=0):
        # The host refuses deeper replies as a protocol breach (and replaces the worker): say so here instead, with the
        # ValueError an in-process session raises (calls.export_tree).
        if depth > _MAX_DEPTH:
            calls.check_depth(depth)
        torch = sys.modules.get("torch")
        if torch is not None and type(value) is torch.Tensor:  # the common result first: no other type tests
            return self.encode_tensor(torch, value, pending, export)
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
        if torch is not None and isinstance(value, torch.Tensor):
            return self.encode_tensor(torch, value, pending, export)
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

    def encode_tensor(self, torch, value, pending, export):
        torch_export = self._torch_export
        if torch_export is None:
            from . import torch_export

            self._torch_export = torch_export  # imported once (torch is loaded by then), not per result
        calls.check_rank(value.dim())
        return self.pending_array(torch_export.export(value, detach=export["detach"], upcast=export["upcast"]),
                                  "tensor", pending)

    def pending_array(self, array, kind, pending):
        name = protocol.dtype_name(array.dtype)
        entry = {"t": kind, "dtype": name, "shape": list(array.shape), "offset": 0, "region": 0}
        pending.append((entry, array))
        return entry

    def place_arrays(self, pending, reply):
        if not pending:
            return
        total = self.lay_out(pending)
        if self.out is None and total >= self.in_request_bytes and self.place_in_request(pending, reply):
            return
        if self.out is not None and self.place_in_output(pending):
            region = self.out
        else:
            region = self.copy_to_result_region(pending, total)
        self.use_result_region(region, reply)

    @staticmethod
    def use_result_region(region, reply):
        """Names the result region in the reply (announcing it the first time: the host then maps it)."""
        if not region.announced:
            region.announced = True
            reply["regions"].append({"id": region.id, "pid": os.getpid(), "fd": region.fd, "size": region.size})
        reply["result_regions"].append(region.id)

    @staticmethod
    def lay_out(pending):
        """Gives each array its aligned offset in a region that holds them all, one after another; returns the size."""
        total = 0
        for entry, array in pending:
            total = protocol.align(total)
            entry["offset"] = total
            total += array.nbytes
        return total

    def copy_to_result_region(self, pending, total):
        region = self.result_region(total)
        if total >= WAKE_AHEAD_BYTES and self.wake_host_ahead is not None:
            self.wake_host_ahead()  # the copy comes next: a sleeping host wakes meanwhile
        for entry, array in pending:
            entry["region"] = region.id
            if array.nbytes:
                self.copy_into(region, entry["offset"], array)
        return region

    def copy_into(self, region, offset, array):
        nbytes = array.nbytes
        np = self.np
        # A subclass may export another buffer than its elements (a Python class defining __buffer__): it is copied
        # as a strided array is, from the array's own memory.
        if array.flags.c_contiguous and type(array) is np.ndarray:
            region.map[offset:offset + nbytes] = array  # one memcpy through the buffer protocol: 0.05 us, not 1 us
        else:
            dest = np.frombuffer(region.map, dtype=array.dtype, count=array.size, offset=offset)
            np.copyto(dest.reshape(array.shape), array, casting="no")  # strided: written in C order
        self.copied_bytes += nbytes

    def place_in_request(self, pending, reply):
        """Answers the reply's arrays where they are when every one lies in the running call's request region (C
        order, aligned to its item size): an argument returned as it came, changed in place, or a contiguous view of
        it. The host then leases that region to the result instead of reusing it for its next request. False
        otherwise (then they are copied). ``handle`` copies them after all when Python keeps views of that region
        beyond the call."""
        region_id = self.call_region
        region = self.request_regions.get(region_id)
        if region is None:
            return False  # no array argument (an array from an earlier call's region is not this request's to lease)
        np = self.np
        base = self.request_base(region_id, region)
        places = []
        for entry, array in pending:
            if not array.nbytes:
                places.append(0)
                continue
            if not array.flags.c_contiguous or type(array) is not np.ndarray:
                return False
            offset = array.__array_interface__["data"][0] - base
            if offset < 0 or offset + array.nbytes > len(region) or offset % array.dtype.itemsize:
                return False
            places.append(offset)
        for (entry, array), offset in zip(pending, places):
            entry["region"] = region_id
            entry["offset"] = offset
        reply["result_regions"].append(region_id)
        reply["result_in_request"] = True
        self.in_request = (region_id, region, [entry for entry, _ in pending])
        return True

    def request_base(self, region_id, region):
        """The address of a request region's mapping (probed once per region)."""
        base = self.request_bases.get(region_id)
        if base is None:
            base = self.request_bases[region_id] = _mapping_address(self.np, region)
        return base

    def copy_out_of_request(self, reply):
        """The reply answered inside a request region that Python kept views of (they may change it later): its arrays
        are copied into a result region after all, as they were when the call returned."""
        region_id, mapping, entries = self.in_request
        self.in_request = None
        pending = [(entry, protocol.view_array(self.np, mapping, entry)) for entry in entries]
        reply["result_regions"].remove(region_id)
        del reply["result_in_request"]
        region = self.copy_to_result_region(pending, self.lay_out(pending))
        del pending
        self.use_result_region(region, reply)

    def place_in_output(self, pending):
        """Places the reply's arrays in the call's output region: those already inside it (output.empty, C order) in
        place, the others copied after its used part. False when the others do not fit (then all are copied)."""
        np = self.np
        region = self.out
        base = region.address(np)
        end = self.out_used
        places = []
        for entry, array in pending:
            address = array.__array_interface__["data"][0] if array.nbytes else 0
            if array.nbytes and array.flags.c_contiguous and base <= address and address + array.nbytes <= base + region.size:
                places.append(address - base)  # written in place by the callee: no copy
            else:
                end = protocol.align(end)
                places.append(-1 - end)
                end += array.nbytes
        if end > region.size:
            return False
        for (entry, array), place in zip(pending, places):
            entry["region"] = region.id
            if place >= 0:
                entry["offset"] = place
            else:
                entry["offset"] = -1 - place
                if array.nbytes:
                    self.copy_into(region, entry["offset"], array)
        return True

    # ---- requests -----------------------------------------------------------------------------

    def handle(self, request):
        """The reply to a checked request; a failed call's error reply still reports closed and retained regions."""
        reply = {"id": request["id"], "ok": True, "regions": [], "result_regions": [], "closed": [], "retained": []}
        arrays = []
        failure = None
        self.call_region = None
        try:
            self._handle(request, reply, arrays)
        except BaseException as e:  # noqa: BLE001 - every Python error (SystemExit too) goes back to the host
            failure = protocol.error_reply(request["id"], e, protocol_error=isinstance(e, ProtocolError))
            del e
        # After the call: the host may release a handle (its reference was collected) in the very request that uses it.
        for h in request["release_handles"]:
            self.handles.pop(h, None)
        # Outside the except block, so that the traceback no longer keeps the call's inputs alive.
        reply["retained"] = self.retained(arrays) if arrays else []
        if self.in_request is not None:
            try:
                if failure is None and self.in_request[0] in reply["retained"]:
                    self.copy_out_of_request(reply)
            except BaseException as e:  # noqa: BLE001 - no region for the copy: an error reply, still reporting retained
                failure = protocol.error_reply(request["id"], e)
                del e
            self.in_request = None
        self.finish_output(reply if failure is None else {}, reply["closed"])
        if failure is not None:
            failure["closed"], failure["retained"] = reply["closed"], reply["retained"]
            reply = failure
        for key in _REPLY_LISTS:
            if not reply.get(key, True):
                del reply[key]  # the host reads a missing list as empty: smaller frames, less to parse
        return reply

    def _handle(self, request, reply, arrays):
        self.release_results(request["release_regions"], reply["closed"])
        for region_id in request["drop_regions"]:
            self.request_regions.pop(region_id, None)
            self.request_bases.pop(region_id, None)
        self.map_request_regions(request["regions"])
        op = request["op"]
        if op == "ping":
            reply["value"] = {"t": "none"}
            return
        pending = []
        grad = request["grad"]
        if grad == "default":  # the common case without a context manager (calls.grad_context's nullcontext)
            self._run(request, op, reply, arrays, pending)
        else:
            with self.grad_mode(grad):
                self._run(request, op, reply, arrays, pending)
        self.place_arrays(pending, reply)

    def _run(self, request, op, reply, arrays, pending):
        """Resolves the target, calls it (or answers a resolve), and encodes the value into ``reply``."""
        target = self.resolve(request["target"])
        if op == "resolve":
            result = target
        else:
            args = [self.decode(a, arrays) for a in request["args"]]
            kw_names = request["kw_names"]
            if kw_names:
                kwargs = {k: self.decode(v, arrays) for k, v in zip(kw_names, request["kw_values"])}
                result = target(*args, **kwargs)
                del kwargs
            else:
                result = target(*args)  # no keyword arguments: no dict to build
            del args
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
            self.request_bases.pop(region_id, None)
        return sorted(kept)

    @staticmethod
    def grad_mode(grad):
        return calls.grad_context(_GRAD_CODES[grad])

    def serve(self, channel, hello_channel=None, control=False):
        """The request loop: the hello over ``hello_channel`` (the pipe), then requests and replies over ``channel``."""
        hello = self.hello()
        hello["control"] = control
        self.wake_host_ahead = getattr(channel, "wake_host_ahead", None)
        (hello_channel or channel).write(hello)
        while True:
            raw = channel.read()
            if raw is None:
                return 0
            binary = type(raw) is bytes  # a binary call (protocol.check_binary_request); else parsed JSON
            try:
                request = protocol.check_binary_request(raw) if binary else protocol.check_request(raw)
            except ProtocolError as e:
                channel.write(protocol.error_reply(raw.get("id") if isinstance(raw, dict) else None, e, protocol_error=True))
                continue
            if request["op"] == "shutdown":
                channel.write({"id": request["id"], "ok": True, "value": {"t": "none"}})
                return 0
            try:
                reply = self.handle(request)
            except ProtocolError as e:
                reply = protocol.error_reply(request["id"], e, protocol_error=True)
            except BaseException as e:  # noqa: BLE001 - every Python error (SystemExit too) goes back to the host
                reply = protocol.error_reply(request["id"], e)
                del e
            if binary and reply["ok"]:
                reply = protocol.encode_binary_reply(reply) or reply  # results other than scalars and arrays: JSON
            channel.write(reply)


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
    options = dict(zip(argv[::2], argv[1::2]))
    if len(argv) % 2 or "--host-pid" not in options or set(options) - {"--host-pid", "--control-fd"}:
        print("usage: python -m interop_helpers.worker --host-pid PID [--control-fd FD]", file=sys.stderr)
        return 2
    host_pid = int(options["--host-pid"])
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
    pipe = protocol.PipeChannel(reader, writer)
    channel, control = pipe, False
    if "--control-fd" in options:
        try:
            channel, control = protocol.ControlChannel(host_pid, int(options["--control-fd"]), reader, writer), True
        except (OSError, ValueError, ProtocolError) as e:
            # The host falls back to the pipes when the hello says so.
            print("interop worker: the control block is not usable (%s); using the pipes" % e, file=sys.stderr)
    try:
        return Worker(host_pid).serve(channel, pipe, control)
    except ProtocolError as e:
        print("interop worker: %s; exiting" % e, file=sys.stderr)
        return 3
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
