"""The Python side's copy of Interop's dtype table (src/Interop/DTypes/DType.cs).

The .NET test suite checks that both tables agree row for row, and python/tests checks this table against
NumPy and PyTorch themselves, so neither side can drift silently.
"""

# name: (kind, itemsize, numpy name or None, torch name, TorchSharp ScalarType code or None)
DTYPES = {
    "bool": ("bool", 1, "bool", "torch.bool", 11),
    "int8": ("int", 1, "int8", "torch.int8", 1),
    "int16": ("int", 2, "int16", "torch.int16", 2),
    "int32": ("int", 4, "int32", "torch.int32", 3),
    "int64": ("int", 8, "int64", "torch.int64", 4),
    "uint8": ("uint", 1, "uint8", "torch.uint8", 0),
    "uint16": ("uint", 2, "uint16", "torch.uint16", None),
    "uint32": ("uint", 4, "uint32", "torch.uint32", None),
    "uint64": ("uint", 8, "uint64", "torch.uint64", None),
    "float16": ("float", 2, "float16", "torch.float16", 5),
    "bfloat16": ("float", 2, None, "torch.bfloat16", 15),
    "float32": ("float", 4, "float32", "torch.float32", 6),
    "float64": ("float", 8, "float64", "torch.float64", 7),
    "complex64": ("complex", 8, "complex64", "torch.complex64", 9),
    "complex128": ("complex", 16, "complex128", "torch.complex128", 10),
}


def rows():
    """The table as a list of tuples (name, kind, itemsize, numpy name, torch name, TorchSharp code)."""
    return [(name,) + row for name, row in DTYPES.items()]
