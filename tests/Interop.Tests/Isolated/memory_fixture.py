"""Worker side of WorkerMemoryTests: memory whose address the host reads directly (process_vm_readv)."""

import ctypes
import os


class Block:
    """A bytearray of n bytes, byte i = (i * 7 + 3) % 256, kept alive while this object is."""

    def __init__(self, n):
        self.data = bytearray((i * 7 + 3) % 256 for i in range(256)) * (n // 256) + bytearray((i * 7 + 3) % 256 for i in range(n % 256))
        self.address = ctypes.addressof((ctypes.c_char * n).from_buffer(self.data)) if n else 0

    def set(self, index, value):
        self.data[index] = value


def block(n):
    return Block(n)


def pid():
    return os.getpid()
