"""Python side of the model-transfer benchmark (ModelTransferBench.cs): runs in an isolated worker."""

import os
import time

import torch


def resnet18(seed):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def save(model, path):
    """The route users take today, Python half: torch.save of the state dict to a file (flushed). Returns seconds."""
    start = time.perf_counter()
    with open(path, "wb") as f:
        torch.save(model.state_dict(), f)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - start


class Holder:
    def __init__(self, state):
        self.state = state


def synthetic(count, mib):
    n = mib * (1 << 20) // 4
    return Holder({f"w{i}": torch.full((n,), float(i), dtype=torch.float32) for i in range(count)})


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


def rss():
    return _status("VmRSS")


def peak_rss():
    return _status("VmHWM")


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
