"""Functions the isolated-mode benchmarks call (in the worker, and in-process for comparison)."""
_cache = {}


def identity(t):
    """The argument back: one copy in (host -> shared memory), one copy out (tensor -> result region)."""
    return t


def nbytes(t):
    """Only the way in: the tensor arrives over shared memory; an int goes back."""
    return t.element_size() * t.numel()


def cached(n):
    """Only the way out: a float32 tensor of n elements, made once per size and returned again each call."""
    import torch

    t = _cache.get(n)
    if t is None:
        t = _cache[n] = torch.arange(n, dtype=torch.float32)
    return t
