"""A memory of computed values, bounded in entries and in bytes (section 8).

Attacker input reaches every memory of the library (a presented chain, a checked
certificate, a chain verdict), so each is bounded twice: by its number of entries and
by the bytes its values hold, as each memory measures them. The least recently used
entries go first. Memoisation only: a caller computes the value again when it is not
(or no longer) remembered. Thread-safe. Pure: no clock, files or environment.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "BoundedMemory"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemory(Generic[K, V]):
    """Least-recently-used memory of at most ``max_entries`` values and ``max_bytes``.

    ``put`` takes the size the caller measured for the value; a value larger than
    ``max_bytes`` on its own is not remembered at all.
    """

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a memory needs room for at least one entry and one byte")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """The bytes the remembered values hold, as their callers measured them."""
        return self._bytes

    def get(self, key: K) -> V | None:
        """The value remembered for ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Remember ``value`` (of ``size`` bytes) for ``key``, forgetting the least
        recently used entries until both bounds hold."""
        if size > self.max_bytes:
            return
        with self._lock:
            entries = self._entries
            previous = entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            entries[key] = (value, size)
            self._bytes += size
            while len(entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, forgotten) = entries.popitem(last=False)
                self._bytes -= forgotten

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


class BoundedCache(Generic[K, V]):
    """A cache kept in one :class:`BoundedMemory` of ``maxsize`` entries and
    ``max_bytes``: its size, its bytes and its clearing; subclasses add the lookups."""

    def __init__(self, maxsize: int, max_bytes: int) -> None:
        self._memory: BoundedMemory[K, V] = BoundedMemory(max_entries=maxsize, max_bytes=max_bytes)

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def nbytes(self) -> int:
        """The bytes the remembered values hold, as this cache measures them."""
        return self._memory.nbytes

    def clear(self) -> None:
        self._memory.clear()
