"""Functions the isolated-mode benchmarks call (in the worker, and in-process for comparison)."""
_cache = {}


def identity(t):
    """The argument back: one copy in (host -> shared memory); from 64 KiB up the worker answers it where it lies in the
    request region (no copy back), below that it is copied into a result region."""
    return t


def copy_results_back():
    """Makes this worker copy every result into a result region, as before results that are their argument were answered
    in the request region (the baseline of the Isolated_RoundTripCopiedBack row). Only inside a worker."""
    from interop_helpers import output

    worker = output._allocator.__self__  # the worker's own allocator: a bound method of its Worker
    worker.in_request_bytes = 1 << 62


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


def _one_thread():
    # torch's intra-op threads fight the host and the other processes on a small shared machine (a 1 MiB multiply took
    # 10 ms under load): the scale rows measure where the result goes, so they compute on one thread.
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def scaled(t):
    """A new result tensor (allocated by torch, then copied into a result region by the worker)."""
    _one_thread()
    return t * 2


def scaled_in_place(t):
    """The same result written straight into a result region (interop_helpers.output.empty): no copy on the way out."""
    import torch
    from interop_helpers import output

    _one_thread()
    out = output.empty(t.shape, t.dtype)
    torch.mul(t, 2, out=out)
    return out
