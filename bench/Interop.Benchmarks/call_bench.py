"""Functions the in-process call benchmarks (InProcessCallBenchmarks) call."""


def noop():
    """No arguments, None back: the fixed cost of a call."""


def identity(x):
    """The argument back (a tensor is exported through the policy on the way out)."""
    return x
