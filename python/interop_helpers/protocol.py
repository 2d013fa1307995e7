"""The isolated-mode control protocol, worker side: framing and validation (docs/isolated.md).

A message is a 4-byte little-endian length followed by that many bytes of UTF-8 JSON (an object), or, for
small calls and their replies, of a binary frame that starts with ``INB1`` (see "the binary hot path" below).
Requests are checked field by field before anything uses them: a malformed or hostile request is
answered with a protocol error and never reads or writes outside a shared region. A frame whose length
is out of range cannot be skipped safely, so it ends the worker (exit code 3).
"""

import base64
import json
import math
import mmap
import os
import select
import struct
import time

from . import calls, dtypes

VERSION = 1
MAX_MESSAGE = 64 << 20
MAX_DEPTH = calls.MAX_DEPTH  # the one limit of every session kind (src/Interop/Sessions/ConversionLimits.cs)
MAX_RANK = calls.MAX_RANK
MAX_REGION = 1 << 40
ALIGNMENT = 64
OPS = ("ping", "resolve", "call", "shutdown")
GRAD_MODES = ("default", "no_grad", "inference")
_HEADER = struct.Struct("<I")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1  # int arguments span int64 and uint64 (a .NET ulong), as in-process


class ProtocolError(Exception):
    """A message that breaks the protocol (the host's fault, or a hostile peer)."""


def read_message(stream):
    """The next message as parsed JSON, or None at a clean EOF. Raises ProtocolError on a bad frame."""
    header = _read_exactly(stream, _HEADER.size, allow_eof=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length == 0 or length > MAX_MESSAGE:
        raise ProtocolError("frame length %d is outside 1..%d" % (length, MAX_MESSAGE))
    return _parse_body(_read_exactly(stream, length, allow_eof=False))


def write_message(stream, message):
    body = message if type(message) is bytes else _encode(message)
    stream.write(_HEADER.pack(len(body)) + body)


def _encode(message):
    message = dict(message)
    message["v"] = VERSION
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _parse_body(body):
    if body[:4] == BINARY_MAGIC:
        return bytes(body)  # a binary call (check_binary_request reads it); JSON bodies start with "{"
    try:
        return json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return {"__invalid__": "message is not UTF-8 JSON: %s" % e}


def _read_exactly(stream, n, allow_eof):
    chunks = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == n:
                return None
            raise ProtocolError("the stream ended inside a message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def error_reply(request_id, error, protocol_error=False):
    import traceback

    return {
        "id": request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else -1,
        "ok": False,
        "protocol": protocol_error,
        "error": {
            "type": type(error).__module__ + "." + type(error).__qualname__ if not protocol_error else "ProtocolError",
            "message": _escape_surrogates(str(error)),
            "traceback": "" if protocol_error else _escape_surrogates(
                "".join(traceback.format_exception(type(error), error, error.__traceback__))),
        },
    }


def _escape_surrogates(text):
    """Text that .NET can read: unpaired surrogates (file names decoded with surrogateescape) spelled as \\udcXX."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


check_text = calls.check_text  # one rule for result strings in every session kind


# ---- validation -------------------------------------------------------------------------------------


def _fail(what):
    raise ProtocolError(what)


def _int(value, what, low=0, high=_INT64[1]):
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        _fail("%s must be an integer in %d..%d, got %r" % (what, low, high, _clip(value)))
    return value


def _str(value, what):
    if not isinstance(value, str):
        _fail("%s must be a string, got %r" % (what, _clip(value)))
    return value


def _list(value, what):
    if not isinstance(value, list):
        _fail("%s must be a list, got %r" % (what, _clip(value)))
    return value


def _clip(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()
_HOUSEKEEPING = ("release_regions", "release_handles", "drop_regions")
_DEFAULT_EXPORT = {"detach": True, "upcast": False}


def check_request(raw):
    """A validated, normalised copy of a request; raises ProtocolError naming the first bad field."""
    if not isinstance(raw, dict):
        _fail("a request must be a JSON object")
    if "__invalid__" in raw:
        _fail(raw["__invalid__"])
    if raw.get("v") != VERSION:
        _fail("protocol version %r is not supported (this worker speaks %d)" % (_clip(raw.get("v")), VERSION))
    request = {"id": _int(raw.get("id"), "id"), "op": raw.get("op")}
    if request["op"] not in OPS:
        _fail("unknown op %r (expected one of %s)" % (_clip(request["op"]), ", ".join(OPS)))
    if request["op"] == "shutdown":
        return request
    # Lists the host leaves out when empty (the common case: nothing to check).
    regions = raw.get("regions", _MISSING)
    request["regions"] = [] if regions is _MISSING else [_check_region(r) for r in _list(regions, "regions")]
    for key in _HOUSEKEEPING:
        items = raw.get(key, _MISSING)
        request[key] = [] if items is _MISSING else [_int(i, key + " item") for i in _list(items, key)]
    if request["op"] == "ping":
        return request
    request["target"] = _check_ref(raw.get("target"))
    request["grad"] = raw.get("grad", "default")
    if request["grad"] not in GRAD_MODES:
        _fail("grad must be one of %s, got %r" % (", ".join(GRAD_MODES), _clip(request["grad"])))
    export = raw.get("export", _DEFAULT_EXPORT)
    if not isinstance(export, dict) or not all(isinstance(export.get(k), bool) for k in ("detach", "upcast")):
        _fail("export must be an object with boolean detach and upcast")
    request["export"] = {"detach": export["detach"], "upcast": export["upcast"]}
    request["args"] = [check_value(v) for v in _list(raw.get("args", []), "args")]
    names = raw.get("kw_names", _MISSING)
    names = [] if names is _MISSING else [_str(n, "kw_names item") for n in _list(names, "kw_names")]
    values = raw.get("kw_values", _MISSING)
    values = [] if values is _MISSING else [check_value(v) for v in _list(values, "kw_values")]
    if len(names) != len(values):
        _fail("kw_names has %d entries but kw_values has %d" % (len(names), len(values)))
    request["kw_names"], request["kw_values"] = names, values
    return request


def _check_region(raw):
    if not isinstance(raw, dict):
        _fail("a region must be an object")
    return {"id": _int(raw.get("id"), "region id"), "fd": _int(raw.get("fd"), "region fd", 0, 1 << 30),
            "size": _int(raw.get("size"), "region size", 1, MAX_REGION)}


def _check_ref(raw):
    if not isinstance(raw, dict):
        _fail("a reference must be an object")
    base = raw.get("base")
    ref = {"base": base, "attrs": [_str(a, "attribute name") for a in _list(raw.get("attrs", []), "attrs")]}
    if base in ("module", "file"):
        ref["name"] = _str(raw.get("name"), "reference name")
        if base == "file":
            ref["generation"] = _int(raw.get("generation", 0), "generation")
    elif base == "handle":
        ref["handle"] = _int(raw.get("handle"), "handle", 1)
    else:
        _fail("reference base must be module, file or handle, got %r" % _clip(base))
    return ref


def check_value(raw, depth=0):
    """A validated copy of an encoded argument (floats decoded); raises ProtocolError."""
    if depth > MAX_DEPTH:
        _fail("values are nested deeper than %d" % MAX_DEPTH)
    if not isinstance(raw, dict):
        _fail("a value must be an object")
    kind = raw.get("t")
    if kind == "none":
        return {"t": "none"}
    if kind == "bool":
        if not isinstance(raw.get("v"), bool):
            _fail("bool value must be true or false")
        return {"t": kind, "v": raw["v"]}
    if kind == "int":
        return {"t": kind, "v": _int(raw.get("v"), "int value", _INT64[0], _UINT64_MAX)}
    if kind == "float":
        return {"t": kind, "v": parse_float(raw.get("v"))}
    if kind == "str":
        return {"t": kind, "v": _str(raw.get("v"), "str value")}
    if kind == "bytes":
        try:
            return {"t": kind, "v": base64.b64decode(_str(raw.get("v"), "bytes value"), validate=True)}
        except (ValueError, TypeError):
            _fail("bytes value must be base64")
    if kind in ("list", "tuple"):
        return {"t": kind, "items": [check_value(v, depth + 1) for v in _list(raw.get("items"), "items")]}
    if kind == "dict":
        keys = [_str(k, "dict key") for k in _list(raw.get("keys"), "keys")]
        items = [check_value(v, depth + 1) for v in _list(raw.get("items"), "items")]
        if len(keys) != len(items):
            _fail("dict has %d keys but %d items" % (len(keys), len(items)))
        return {"t": kind, "keys": keys, "items": items}
    if kind == "object":
        return {"t": kind, "ref": _check_ref(raw.get("ref"))}
    if kind in ("tensor", "ndarray", "array"):  # "array": torch.Tensor if the worker has PyTorch, else numpy.ndarray
        name = raw.get("dtype")
        row = dtypes.DTYPES.get(name) if isinstance(name, str) else None
        if row is None or row[2] is None:
            _fail("unknown or unsupported dtype %r" % _clip(name))
        shape = [_int(d, "dimension", 0, 1 << 48) for d in _list(raw.get("shape"), "shape")]
        if len(shape) > MAX_RANK:
            _fail("rank %d exceeds %d" % (len(shape), MAX_RANK))
        offset = _int(raw.get("offset"), "offset", 0, MAX_REGION)
        if offset % row[1]:
            _fail("offset %d is not a multiple of the item size %d" % (offset, row[1]))
        return {"t": kind, "dtype": name, "shape": shape, "offset": offset, "region": _int(raw.get("region"), "region")}
    _fail("unknown value type %r" % _clip(kind))


_NUMPY_DTYPES = {}  # table name -> numpy.dtype, made once each (np.dtype(name) costs a lookup per call)


def view_array(np, region, value):
    """An ndarray over ``region`` as ``value`` describes, after checking it lies inside the region."""
    itemsize = dtypes.DTYPES[value["dtype"]][1]
    count = 1
    for d in value["shape"]:
        count *= d
    end = value["offset"] + count * itemsize
    if end > len(region):
        raise ProtocolError("array of %d bytes at offset %d runs past the %d-byte region"
                            % (count * itemsize, value["offset"], len(region)))
    dtype = _NUMPY_DTYPES.get(value["dtype"])
    if dtype is None:
        dtype = _NUMPY_DTYPES[value["dtype"]] = np.dtype(dtypes.DTYPES[value["dtype"]][2])
    if count == 0:
        return np.empty(value["shape"], dtype)
    return np.frombuffer(region, dtype=dtype, count=count, offset=value["offset"]).reshape(value["shape"])


# ---- the binary hot path ----------------------------------------------------------------------------
# A call with positional arguments that are None, bool, int64, float or arrays, and its reply when the result is one of
# those (docs/isolated.md, "Binary calls"); everything else is JSON. All integers little-endian. The dtype code is the
# row's index in the one dtype table (dtypes.DTYPES, DType.All in .NET; tests check that both orders agree).

BINARY_MAGIC = b"INB1"
BINARY_CALL = 1
BINARY_OK = 1
# magic, op, grad, export flags, target base, id, handle, argument count, attribute count, name bytes,
# counts of: new regions, drop_regions, release_regions, release_handles
_BIN_REQUEST = struct.Struct("<4sBBBBqqHHIHHHH")
# magic, kind, value tag, flags (REPLY_IN_REQUEST), id, counts of: regions, result_regions, closed, retained
_BIN_REPLY = struct.Struct("<4sBBHqHHHH")
# The reply's one result region is a request region of the host (JSON: "result_in_request": true).
REPLY_IN_REQUEST = 1
# dtype code, rank, 2 bytes zero, region id, offset (then rank int64 dimensions)
_BIN_ARRAY = struct.Struct("<BBHIq")
_BIN_REGION = struct.Struct("<qqq")  # id, fd, size
_BIN_RESULT_REGION = struct.Struct("<qqqq")  # id, pid, fd, size
_BIN_Q = struct.Struct("<q")
_BIN_D = struct.Struct("<d")
_BIN_B = struct.Struct("<B")
_BIN_H = struct.Struct("<H")
TAG_NONE, TAG_BOOL, TAG_INT, TAG_FLOAT, TAG_TENSOR, TAG_NDARRAY, TAG_ARRAY = range(7)
_TAG_KINDS = {TAG_TENSOR: "tensor", TAG_NDARRAY: "ndarray", TAG_ARRAY: "array"}
_KIND_TAGS = {"tensor": TAG_TENSOR, "ndarray": TAG_NDARRAY}
_BASES = ("module", "file", "handle")
_DTYPE_BY_CODE = tuple(dtypes.DTYPES)
_CODE_BY_DTYPE = {name: code for code, name in enumerate(_DTYPE_BY_CODE)}
_DIMS = [struct.Struct("<%dq" % n) for n in range(MAX_RANK + 1)]


def _truncated(body, what):
    _fail("binary frame of %d bytes ends inside %s" % (len(body), what))


def _text(body, pos, length, what):
    end = pos + length
    if end > len(body):
        _truncated(body, what)
    try:
        return body[pos:end].decode("utf-8"), end
    except UnicodeDecodeError:
        _fail("%s is not UTF-8" % what)


def _ints(body, pos, count, what):
    """``count`` int64 items at ``pos`` (each in 0..int64 max) and the position after them."""
    if not count:
        return [], pos
    if pos + 8 * count > len(body):
        _truncated(body, what)
    items = list(_DIMS[count].unpack_from(body, pos)) if count <= MAX_RANK else \
        [_BIN_Q.unpack_from(body, pos + 8 * k)[0] for k in range(count)]
    for item in items:
        if item < 0:
            _fail("%s must be an integer in 0..%d, got %d" % (what, _INT64[1], item))
    return items, pos + 8 * count


def check_binary_request(body):
    """A validated, normalised request (as check_request returns) from a binary call frame; ProtocolError naming the
    first bad field, a truncated frame, or trailing bytes. Every read is bounds-checked before it is made."""
    size = len(body)
    if size < 40:
        _truncated(body, "the binary request header")
    (_, op, grad, flags, base, request_id, handle, argc, attrc, name_length,
     new_regions, drops, releases, handle_releases) = _BIN_REQUEST.unpack_from(body, 0)
    if op != BINARY_CALL:
        _fail("binary op %d is not a call" % op)
    if grad > 2:
        _fail("binary grad mode %d is outside 0..2" % grad)
    if flags & ~3:
        _fail("binary export flags %#x has unknown bits" % flags)
    if request_id < 0:
        _fail("id must be an integer in 0..%d, got %d" % (_INT64[1], request_id))
    pos = 40
    if base == 2:
        if handle < 1:
            _fail("handle must be an integer in 1..%d, got %d" % (_INT64[1], handle))
        if name_length:
            _fail("a handle reference has no name")
        ref = {"base": "handle", "handle": handle}
    elif base == 1:
        if handle < 0:
            _fail("generation must be an integer in 0..%d, got %d" % (_INT64[1], handle))
        name, pos = _text(body, pos, name_length, "the reference name")
        ref = {"base": "file", "name": name, "generation": handle}  # a file's handle field: its generation
    elif base == 0:
        if handle:
            _fail("a module reference has no handle")
        name, pos = _text(body, pos, name_length, "the reference name")
        ref = {"base": "module", "name": name}
    else:
        _fail("binary reference base %d is outside 0..2" % base)
    attrs = []
    for _ in range(attrc):
        if pos + 2 > size:
            _truncated(body, "an attribute name length")
        attr, pos = _text(body, pos + 2, _BIN_H.unpack_from(body, pos)[0], "an attribute name")
        attrs.append(attr)
    ref["attrs"] = attrs
    regions = []
    for _ in range(new_regions):
        if pos + 24 > size:
            _truncated(body, "a region")
        region_id, fd, region_size = _BIN_REGION.unpack_from(body, pos)
        pos += 24
        regions.append({"id": _int(region_id, "region id"), "fd": _int(fd, "region fd", 0, 1 << 30),
                        "size": _int(region_size, "region size", 1, MAX_REGION)})
    drop, pos = _ints(body, pos, drops, "drop_regions item")
    release, pos = _ints(body, pos, releases, "release_regions item")
    release_handles, pos = _ints(body, pos, handle_releases, "release_handles item")
    args = []
    append = args.append
    for _ in range(argc):
        if pos >= size:
            _truncated(body, "an argument tag")
        tag = body[pos]
        pos += 1
        if tag >= TAG_TENSOR:
            if tag > TAG_ARRAY:
                _fail("unknown binary argument tag %d" % tag)
            if pos + 16 > size:
                _truncated(body, "an array descriptor")
            code, rank, zero, region, offset = _BIN_ARRAY.unpack_from(body, pos)
            pos += 16
            row = dtypes.DTYPES[_DTYPE_BY_CODE[code]] if code < len(_DTYPE_BY_CODE) else None
            if row is None or row[2] is None:
                _fail("unknown or unsupported dtype code %d" % code)
            if rank > MAX_RANK:
                _fail("rank %d exceeds %d" % (rank, MAX_RANK))
            if zero:
                _fail("array descriptor padding must be zero")
            if pos + 8 * rank > size:
                _truncated(body, "array dimensions")
            shape = list(_DIMS[rank].unpack_from(body, pos))
            pos += 8 * rank
            for d in shape:
                if not 0 <= d <= 1 << 48:
                    _fail("dimension must be an integer in 0..%d, got %d" % (1 << 48, d))
            if not 0 <= offset <= MAX_REGION:
                _fail("offset must be an integer in 0..%d, got %d" % (MAX_REGION, offset))
            if offset % row[1]:
                _fail("offset %d is not a multiple of the item size %d" % (offset, row[1]))
            append({"t": _TAG_KINDS[tag], "dtype": _DTYPE_BY_CODE[code], "shape": shape, "offset": offset, "region": region})
        elif tag == TAG_INT or tag == TAG_FLOAT:
            if pos + 8 > size:
                _truncated(body, "a number argument")
            layout = _BIN_Q if tag == TAG_INT else _BIN_D
            append({"t": "int" if tag == TAG_INT else "float", "v": layout.unpack_from(body, pos)[0]})
            pos += 8
        elif tag == TAG_BOOL:
            if pos >= size:
                _truncated(body, "a bool argument")
            if body[pos] > 1:
                _fail("bool argument byte must be 0 or 1, got %d" % body[pos])
            append({"t": "bool", "v": body[pos] == 1})
            pos += 1
        else:
            append({"t": "none"})
    if pos != size:
        _fail("binary request has %d bytes after its last argument" % (size - pos))
    return {"id": request_id, "op": "call", "regions": regions, "drop_regions": drop, "release_regions": release,
            "release_handles": release_handles, "target": ref, "grad": GRAD_MODES[grad],
            "export": _EXPORTS[flags], "kw_names": [], "kw_values": [], "args": args}


_EXPORTS = [{"detach": bool(f & 1), "upcast": bool(f & 2)} for f in range(4)]  # read only (the worker never changes it)


def encode_binary_reply(reply):
    """The binary frame of a successful reply whose value is None, bool, int, float or one array; None otherwise
    (the reply then travels as JSON)."""
    value = reply.get("value")
    kind = value["t"]
    parts = []
    if kind == "none":
        tag = TAG_NONE
    elif kind == "bool":
        tag = TAG_BOOL
        parts.append(_BIN_B.pack(value["v"]))
    elif kind == "int":
        tag = TAG_INT
        parts.append(_BIN_Q.pack(value["v"]))
    elif kind == "float":
        tag = TAG_FLOAT
        parts.append(_BIN_D.pack(parse_float(value["v"])))
    elif kind in _KIND_TAGS:
        tag = _KIND_TAGS[kind]
        shape = value["shape"]
        parts.append(_BIN_ARRAY.pack(_CODE_BY_DTYPE[value["dtype"]], len(shape), 0, value["region"], value["offset"]))
        parts.append(_DIMS[len(shape)].pack(*shape))
    else:
        return None
    regions = reply.get("regions", ())
    results = reply.get("result_regions", ())
    closed = reply.get("closed", ())
    retained = reply.get("retained", ())
    for r in regions:
        parts.append(_BIN_RESULT_REGION.pack(r["id"], r["pid"], r["fd"], r["size"]))
    for ids in (results, closed, retained):
        for i in ids:
            parts.append(_BIN_Q.pack(i))
    flags = REPLY_IN_REQUEST if reply.get("result_in_request") else 0
    header = _BIN_REPLY.pack(BINARY_MAGIC, BINARY_OK, tag, flags, reply["id"], len(regions), len(results), len(closed), len(retained))
    return header + b"".join(parts)


# ---- small encoders ---------------------------------------------------------------------------------


def float_text(x):
    """A float as exact text (repr), with nan/inf spelled so that .NET parses them."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def parse_float(text):
    if not isinstance(text, str):
        _fail("float value must be text, got %r" % _clip(text))
    try:
        return float({"Infinity": "inf", "-Infinity": "-inf"}.get(text, text))
    except ValueError:
        _fail("float value %r is not a number" % _clip(text))


_DTYPE_NAMES = {}


def dtype_name(dtype):
    """The table's name for a NumPy dtype (cached: ``dtype.name`` is slow); TypeError when the table has none."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        for candidate, row in dtypes.DTYPES.items():
            if row[2] == dtype.name and dtype.byteorder in "=|<":
                name = _DTYPE_NAMES[dtype] = candidate
                break
        else:
            raise TypeError("NumPy dtype %s has no row in the dtype table (or is big-endian); convert it first" % dtype)
    return name


def short_repr(value, limit=200):
    try:
        text = repr(value)
    except Exception as e:  # noqa: BLE001 - a broken __repr__ must not break the reply
        text = "<repr failed: %s>" % e
    return text if len(text) <= limit else text[: limit - 3] + "..."


def align(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


# ---- transport --------------------------------------------------------------------------------------
# Two channels carry the frames: the pipes (PipeChannel: the hello, and every frame when the host gave no control
# block), and the shared control block (ControlChannel, src/Interop/Isolated/ControlBlock.cs is the host side).


class PipeChannel:
    """Frames over the worker's original stdin/stdout."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def read(self):
        return read_message(self.reader)

    def write(self, message):
        write_message(self.writer, message)


CONTROL_MAGIC = 0x31435049  # "IPC1"
CONTROL_AREA = 64 << 10
CONTROL_SIZE = 4096 + 2 * CONTROL_AREA
CONTROL_ON_PIPE = 0xFFFFFFFF
# Word indexes (byte offset / 4) of the control block's header.
_REQUEST_SEQ, _WORKER_WAITING, _REQUEST_LENGTH = 16, 17, 18
_REPLY_SEQ, _HOST_WAITING, _REPLY_LENGTH = 32, 33, 34
_REQUEST_AREA, _REPLY_AREA = 4096, 4096 + CONTROL_AREA
# The futex syscall number (x86-64: 202; the generic table of arm64, riscv64, loongarch64: 98).
_FUTEX_NUMBERS = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98, "loongarch64": 98}


class _Futex:
    """FUTEX_WAIT / FUTEX_WAKE on a word of a shared mapping (no PRIVATE flag: the waker is another process)."""

    def __init__(self):
        import ctypes
        import platform

        self.number = _FUTEX_NUMBERS.get(platform.machine().lower())
        if self.number is None:
            raise OSError("no futex syscall number for %s" % platform.machine())
        self.ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        self.timespec = Timespec

    def wait(self, address, expected, seconds):
        c = self.ctypes
        ts = self.timespec(int(seconds), int((seconds % 1) * 1e9))
        # 0: woken by FUTEX_WAKE; -1: the word had changed, the slice ended or a signal came.
        return self.syscall(c.c_long(self.number), c.c_void_p(address), c.c_int(0), c.c_uint(expected), c.byref(ts), None, c.c_int(0))

    def wake(self, address):
        c = self.ctypes
        self.syscall(c.c_long(self.number), c.c_void_p(address), c.c_int(1), c.c_int(2147483647), None, None, c.c_int(0))


class ControlChannel:
    """Frames and doorbells in the host's control block (docs/isolated.md, "Control block").

    The host writes a request frame into the request area (or over the pipe, for frames larger than the area, with the
    length word set to CONTROL_ON_PIPE), then bumps the request sequence; this side answers in the reply area and sets
    the reply sequence to the request's. Waiting is a short spin, then FUTEX_WAIT in slices; between slices the worker
    checks that its host is alive (its parent, and EOF on the stdin pipe, which the host never writes otherwise).
    Every word the host wrote is checked before use: a length outside the area is a ProtocolError (the worker exits 3,
    as for a bad frame on the pipe)."""

    SLICE = 0.1

    def __init__(self, host_pid, fd, reader, writer, spin_seconds=50e-6):
        import ctypes

        self.reader, self.writer, self.host_pid = reader, writer, host_pid
        path = "/proc/%d/fd/%d" % (host_pid, fd)
        handle = os.open(path, os.O_RDWR)
        try:
            if os.fstat(handle).st_size < CONTROL_SIZE:
                raise ProtocolError("the control block is smaller than %d bytes" % CONTROL_SIZE)
            self.map = mmap.mmap(handle, CONTROL_SIZE, mmap.MAP_SHARED)
        finally:
            os.close(handle)
        if hasattr(mmap, "MADV_DONTFORK"):
            self.map.madvise(mmap.MADV_DONTFORK)  # a child this worker forks (multiprocessing) gets no view of it
        self.words = memoryview(self.map).cast("I")
        if self.words[0] != CONTROL_MAGIC:
            raise ProtocolError("the control block has no magic number")
        self.futex = _Futex()
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.spin = spin_seconds
        self.missed = self.waits = 0
        self.last = self.words[_REQUEST_SEQ]
        self.current = 0

    def read(self):
        """The next request (parsed JSON), or None when the host is gone. ProtocolError on a bad length."""
        words = self.words
        if words[_REQUEST_SEQ] == self.last and not self._wait(self.last):
            return None
        self.current = self.last = words[_REQUEST_SEQ]
        length = words[_REQUEST_LENGTH]
        if length == CONTROL_ON_PIPE:
            message = read_message(self.reader)
            if message is None:
                return None
            return message
        if not 0 < length <= CONTROL_AREA:
            raise ProtocolError("control block frame length %d is outside 1..%d" % (length, CONTROL_AREA))
        return _parse_body(self.map[_REQUEST_AREA:_REQUEST_AREA + length])

    def write(self, message):
        body = message if type(message) is bytes else _encode(message)
        words = self.words
        large = len(body) > CONTROL_AREA
        if large:
            words[_REPLY_LENGTH] = CONTROL_ON_PIPE
        else:
            self.map[_REPLY_AREA:_REPLY_AREA + len(body)] = body
            words[_REPLY_LENGTH] = len(body)
        words[_REPLY_SEQ] = self.current
        if words[_HOST_WAITING]:
            self.futex.wake(self.address + 4 * _REPLY_SEQ)
        if large:
            # Announced first, written after: the host reads the pipe once told to, and a frame larger than the pipe's
            # buffer blocks this write until it does.
            self.writer.write(_HEADER.pack(len(body)) + body)

    def wake_host_ahead(self):
        """Wakes the host if it sleeps, ahead of a reply whose large result is about to be copied: its wake-up then
        overlaps the copy, and it spins for the reply. No system call when the host is awake."""
        if self.words[_HOST_WAITING]:
            self.futex.wake(self.address + 4 * _REPLY_SEQ)

    def _wait(self, last):
        words = self.words
        # Adaptive, as on the host: after 4 spins in a row that no request ended, only every 16th wait spins.
        self.waits += 1
        if self.missed < 4 or not self.waits & 15:
            if self._spin(last):
                self.missed = 0
                return True
            self.missed += 1
        address = self.address + 4 * _REQUEST_SEQ
        try:
            while True:
                words[_WORKER_WAITING] = 1
                if words[_REQUEST_SEQ] != last:
                    return True
                woken = self.futex.wait(address, last, self.SLICE) == 0
                if words[_REQUEST_SEQ] != last:
                    return True
                if woken:
                    # Rung ahead: the host is writing a large payload and posts the request when it is done, so the
                    # wake-up overlapped its copy; spin for the request rather than sleep and be woken a second time.
                    words[_WORKER_WAITING] = 0
                    if self._spin(last):
                        return True
                    continue
                if self._host_gone():
                    return False
        finally:
            words[_WORKER_WAITING] = 0

    def _spin(self, last):
        """Spins up to ``self.spin`` seconds for a request after ``last``; True when one came."""
        words = self.words
        clock = time.perf_counter
        until = clock() + self.spin
        while clock() < until:
            for _ in range(16):
                if words[_REQUEST_SEQ] != last:
                    return True
        return False

    def _host_gone(self):
        if os.getppid() != self.host_pid:
            return True
        readable, _, _ = select.select([self.reader], [], [], 0)
        if not readable:
            return False
        # Readable with nothing to read is EOF (the host closed the pipe or exited); bytes are a large frame whose
        # request the host is about to post.
        import array
        import fcntl
        import termios

        pending = array.array("i", [0])
        fcntl.ioctl(self.reader.fileno(), termios.FIONREAD, pending)
        return pending[0] == 0
