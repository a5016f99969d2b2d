"""A bounded cache: what is keyed by input (resize plans, sampling grids, source indices, per
frame size) keeps the `maxsize` most recently used entries, so a stream of ever new frame sizes
holds memory flat instead of growing without end."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

# frame sizes a node or tool keeps plans and grids for: a robot's cameras and a few changes of
# resolution; a grid of a 1920x1080 frame is ~16 MB, so 16 sizes bound the worst case at ~0.3 GB
MAX_CACHED_SIZES = 16


class LRUCache(OrderedDict, Generic[V]):
    """An OrderedDict that keeps at most `maxsize` entries, dropping the least recently used."""

    def __init__(self, maxsize: int = MAX_CACHED_SIZES):
        super().__init__()
        if maxsize < 1:
            raise ValueError(f"an LRU cache holds at least 1 entry, got maxsize={maxsize}")
        self.maxsize = maxsize

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value for `key`, made by `make()` (and the oldest entry dropped) when absent."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.maxsize:
            self.popitem(last=False)
        return value
