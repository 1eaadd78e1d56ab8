"""A history of recently forwarded packets of one upstream stream, for answering NACKs."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class PacketCache(Generic[T]):
    """Fixed-size ring of packets indexed by 16-bit sequence number.

    A slot is overwritten by the packet 'size' sequence numbers later, so a lookup checks
    the stored sequence number and returns None for anything evicted or never seen.
    """

    def __init__(self, size: int = 512) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._items: list[T | None] = [None] * size
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._seqs)

    def store(self, seq: int, item: T) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._items[slot] = item

    def get(self, seq: int) -> T | None:
        slot = seq & self._mask
        if self._seqs[slot] == seq:
            self.hits += 1
            return self._items[slot]
        self.misses += 1
        return None
