"""A fixed-size ring of float64 values: a run's latest values of one metric."""

from __future__ import annotations

from array import array
from collections.abc import Iterable


class Ring:
    """Keeps the last `size` values in one preallocated array (8 bytes a value),
    not a Python list of float objects (24+ bytes each, and growing)."""

    __slots__ = ("buf", "count", "start")

    def __init__(self, size: int, values: Iterable[float] = ()) -> None:
        self.buf = array("d", bytes(8 * size))
        self.start = 0
        self.count = 0
        for value in values:
            self.append(value)

    @property
    def size(self) -> int:
        return len(self.buf)

    def append(self, value: float) -> None:
        size = len(self.buf)
        if self.count < size:
            self.buf[(self.start + self.count) % size] = value
            self.count += 1
        else:
            self.buf[self.start] = value
            self.start = (self.start + 1) % size

    def tail(self, n: int) -> list[float]:
        """The newest min(n, count) values, oldest first."""
        n = min(n, self.count)
        size = len(self.buf)
        first = (self.start + self.count - n) % size
        end = first + n
        if end <= size:
            return self.buf[first:end].tolist()
        return self.buf[first:].tolist() + self.buf[:end - size].tolist()

    def values(self) -> list[float]:
        return self.tail(self.count)

    def to_bytes(self) -> bytes:
        return array("d", self.values()).tobytes()

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Ring:
        values = array("d")
        values.frombytes(data)
        return cls(size, values[-size:] if size else ())
