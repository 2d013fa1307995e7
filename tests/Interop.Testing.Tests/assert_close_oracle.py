"""The oracle of the agreement property test: torch.testing.assert_close on pairs generated in .NET.

One call checks a whole batch: `blob` holds every operand's storage bytes; `meta` (JSON) describes each pair
(dtype, storage slice, shape, strides, offset, options). Returns a JSON list: null where assert_close passed, else
its message; '!' and the error where PyTorch itself raised something else while comparing.
"""
import json

import torch


def version():
    return torch.__version__


def _operand(data, t):
    raw = torch.frombuffer(bytearray(data[t["at"]:t["at"] + t["nbytes"]]), dtype=torch.uint8) if t["nbytes"] else torch.empty(0, dtype=torch.uint8)
    storage = raw.view(getattr(torch, t["dtype"]))
    return torch.as_strided(storage, t["shape"], t["strides"], t["offset"])


def check(blob, meta):
    data = blob.numpy().tobytes() if hasattr(blob, "numpy") else bytes(blob)
    out = []
    for m in json.loads(meta):
        actual = _operand(data, m["a"])
        expected = _operand(data, m["e"])
        kwargs = {}
        if m["rtol"] is not None:
            kwargs["rtol"] = float(m["rtol"])
            kwargs["atol"] = float(m["atol"])
        try:
            torch.testing.assert_close(actual, expected, equal_nan=m["equal_nan"], check_dtype=m["check_dtype"],
                                       check_stride=m["check_stride"], **kwargs)
            out.append(None)
        except AssertionError as e:
            out.append(str(e))
        except Exception as e:  # PyTorch's own failure while reporting (e.g. OverflowError from abs(complex))
            cause = e.__cause__ or e.__context__ or e
            out.append("!" + type(cause).__name__ + ": " + str(cause).splitlines()[0])
    return json.dumps(out)
