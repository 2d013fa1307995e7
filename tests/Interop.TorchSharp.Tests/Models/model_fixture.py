"""Python side of the model-reuse tests: models built with a fixed seed (no downloads), run in eval mode.

Runs in an isolated worker (Python torch never joins the TorchSharp test process).
"""

import torch
from torch import nn


def _randomise_buffers(model, seed):
    # Fresh BatchNorm statistics are 0/1 and 0 batches: make them distinctive, so a load that misses buffers fails.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(seed + 5)
    return model


def torchvision_model(name, seed):
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    return _randomise_buffers(model, seed).eval()


class Encoder(nn.Module):
    """A transformer encoder layer (sequence-first, no dropout) and a linear head."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.layer(x))


class Recurrent(nn.Module):
    """A two-layer LSTM (sequence-first) and a linear head on the last step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(10, 20, num_layers=2)
        self.head = nn.Linear(20, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[-1])


def encoder(seed):
    torch.manual_seed(seed)
    return Encoder().eval()


def recurrent(seed):
    torch.manual_seed(seed)
    return Recurrent().eval()


def run(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def checksum(model):
    """Sum of every state entry as float64 (to see that a load changed the Python model)."""
    return float(sum(t.double().sum() for t in model.state_dict().values()))


# ---- bfloat16 and the other dtypes ------------------------------------------------------------

class Mixed(nn.Module):
    """One parameter or buffer per dtype the transfer carries."""

    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(4, 3, generator=g, dtype=torch.float64) * 1e3
        self.f32 = nn.Parameter(base.float())
        self.register_buffer("f64", base * 1e-3)
        self.register_buffer("f16", base.half())
        self.bf16 = nn.Parameter(base.bfloat16())
        self.register_buffer("i64", (base * 1e6).long())
        self.register_buffer("flags", base > 0)
        self.register_buffer("c64", torch.complex(base.float(), -base.float()))
        self.register_buffer("c128", torch.complex(base, base * 1e-9))
        self.register_buffer("scalar", torch.tensor(7, dtype=torch.int64))


def mixed(seed):
    model = Mixed(seed)
    with torch.no_grad():
        # bit patterns float32 cannot round-trip through a careless upcast/downcast: subnormal, NaN payload, -0
        special = torch.tensor([0x0001, 0x7FC1, 0x8000, 0x7F80, 0xFF81, 0x3F81], dtype=torch.int32).to(torch.int16)
        model.bf16.view(-1)[:6].copy_(special.view(torch.bfloat16))
    return model


def bf16_bits(model):
    """The bfloat16 parameter's raw bits as int16 (NumPy has int16)."""
    return model.bf16.detach().view(torch.int16).clone()


def entry(model, name):
    """One state entry, bfloat16 as raw int16 bits."""
    t = model.state_dict()[name]
    return t.view(torch.int16).clone() if t.dtype == torch.bfloat16 else t.clone()


def save_checkpoint(model, path):
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, path)


class Holder:
    """Keeps a plain state dict in the worker (a dict result would travel to .NET as a mapping); .state is the dict."""

    def __init__(self, state):
        self.state = state


def big_state(count, mib):
    """A synthetic state dict of count float32 tensors of mib MiB each, held in the worker (Holder.state)."""
    n = mib * (1 << 20) // 4
    return Holder({f"w{i}": torch.full((n,), float(i), dtype=torch.float32) for i in range(count)})


def aliased_state(count, elements, big):
    """Holder of {'big': `big` float32 zeros, 't0'..: one float32 tensor of `elements` zeros under `count` names (tied
    weights: those entries are the same memory)."""
    shared = torch.zeros(elements, dtype=torch.float32)
    return Holder({"big": torch.zeros(big, dtype=torch.float32), **{f"t{i}": shared for i in range(count)}})


def distinct_state(count, elements, big):
    """Holder of {'big': `big` float32 values -1, 't0'..: count float32 tensors of `elements` values, entry i filled with i}."""
    return Holder({"big": torch.full((big,), -1.0), **{f"t{i}": torch.full((elements,), float(i)) for i in range(count)}})


class Swappable(nn.Module):
    """One parameter w of n float32 ones."""

    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))


SWAPPABLE = None
_described = [0]


def make_swappable(n):
    """A fresh module SWAPPABLE (reached by attribute path: a reference bound to no worker), and a count of the
    open_described calls that have returned (described_count), for a test that changes the module right after one."""
    global SWAPPABLE
    from interop_helpers import model_state

    SWAPPABLE = Swappable(n)
    honest = getattr(model_state.open_described, "_honest", model_state.open_described)
    _described[0] = 0

    def counting(*args, **kwargs):
        result = honest(*args, **kwargs)
        _described[0] += 1
        return result

    counting._honest = honest
    model_state.open_described = counting


def described_count():
    return _described[0]


def swap_weights(value):
    """Gives SWAPPABLE.w new memory filled with value (param.data = ...: the old storage is freed)."""
    from interop_helpers import model_state

    model_state.open_described = getattr(model_state.open_described, "_honest", model_state.open_described)
    SWAPPABLE.w.data = torch.full_like(SWAPPABLE.w, float(value))
    return SWAPPABLE.w.data_ptr()


def value_of(mapping, name):
    """A copy of one entry of a plain mapping (a Holder's state)."""
    return mapping[name].clone()


def transposed_state(rows, cols):
    """Holder of {'w': a transposed (non-contiguous) view of arange(rows * cols) as float32 [rows, cols]}."""
    return Holder({"w": torch.arange(rows * cols, dtype=torch.float32).reshape(rows, cols).t()})


# ---- a hostile worker: pin_batch describing memory the worker does not have ----------------------------------

_hostile = {}


def hostile_pins(mode, function="pin_batch"):
    """Replaces interop_helpers.model_state.<function> (open_described, open_target_described, pin_batch or pin_targets) in this worker with
    one that lies about the first entry's memory; restore_pins() undoes it.

    mode: 'unmapped' (an address in the never-mapped first pages), 'negative' (an impossible address), 'size' (4 bytes
    more than the entry holds), 'short' (a mapping whose second half was unmapped: the copy stops in the middle),
    'readonly' (a read-only mapping: a write fails).
    """
    import ctypes
    import mmap

    from interop_helpers import model_state

    honest = getattr(model_state, function)
    _hostile["honest"] = (function, honest)

    def lying(*args, **kwargs):
        import json

        result = honest(*args, **kwargs)
        described = function in ("open_described", "open_target_described")
        rows = json.loads(result[2] if described else result)
        address, size = rows[0]
        if mode == "unmapped":
            rows[0] = [4096, size]
        elif mode == "negative":
            rows[0] = [-8, size]
        elif mode == "size":
            rows[0] = [address, size + 4]
        elif mode in ("short", "readonly"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            length = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
            half = length // 2 // mmap.PAGESIZE * mmap.PAGESIZE
            if mode == "short":
                base = libc.mmap(None, length, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
                libc.munmap(base + half, length - half)
                _hostile["mapping"] = (libc, base, half)
            else:
                base = libc.mmap(None, length, 1, 0x22, -1, 0)  # PROT_READ only
                _hostile["mapping"] = (libc, base, length)
            rows[0] = [base, size]
        if described:
            return [result[0], result[1], json.dumps(rows)]
        return json.dumps(rows)

    setattr(model_state, function, lying)


def restore_pins():
    from interop_helpers import model_state

    if "honest" in _hostile:
        function, honest = _hostile.pop("honest")
        setattr(model_state, function, honest)
    if "mapping" in _hostile:
        libc, base, half = _hostile.pop("mapping")
        libc.munmap(base, half)
