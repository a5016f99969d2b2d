"""A latest-frame slot per camera between the executor thread and the inference worker.

Never a queue: `put` overwrites what the worker has not taken yet (and reports it as a stale
drop), so under overload the worker always sees the newest frame and memory stays flat.
`take` waits for the first frame, then up to `batch_window_s` for the other active cameras, so
frames that arrive together go through one batched inference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]


class LatestFrameSlots:
    """One overwrite-on-put slot per camera, shared by producers and a single consumer."""

    def __init__(self, num_slots: int, active_timeout_s: float = 1.0, clock: Clock = time.monotonic) -> None:
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self._cond = threading.Condition()
        self._items: list[Any | None] = [None] * num_slots
        self._last_put: list[float] = [float("-inf")] * num_slots
        self._active_timeout_s = active_timeout_s
        self._clock = clock
        self._closed = False
        self._busy = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, index: int, item: Any) -> bool:
        """Stores `item` as camera `index`'s latest frame. Returns True when it replaced a frame
        the worker had not taken (that frame is dropped as stale and counted)."""
        with self._cond:
            if self._closed:
                return False
            replaced = self._items[index] is not None
            if replaced:
                self.dropped += 1
            self._items[index] = item
            self._last_put[index] = self._clock()
            self._cond.notify_all()
            return replaced

    def _pending(self) -> list[int]:
        return [i for i, item in enumerate(self._items) if item is not None]

    def _active(self, now: float) -> list[int]:
        return [i for i, t in enumerate(self._last_put) if now - t <= self._active_timeout_s]

    def take(self, batch_window_s: float = 0.0, timeout_s: float | None = None) -> list[tuple[int, Any]]:
        """Waits for at least one frame (up to `timeout_s`; [] on timeout or close), then up to
        `batch_window_s` more for every recently active camera, and empties the taken slots.
        Marks the consumer busy until `task_done()`."""
        with self._cond:
            deadline = None if timeout_s is None else self._clock() + timeout_s
            while not self._closed and not self._pending():
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return []
                self._cond.wait(remaining)
            if self._closed:
                return []
            if batch_window_s > 0 and len(self._items) > 1:
                batch_deadline = self._clock() + batch_window_s
                while not self._closed:
                    waiting_for = set(self._active(self._clock())) - set(self._pending())
                    remaining = batch_deadline - self._clock()
                    if not waiting_for or remaining <= 0:
                        break
                    self._cond.wait(remaining)
            taken = [(i, self._items[i]) for i in self._pending()]
            for i, _ in taken:
                self._items[i] = None
            self._busy = bool(taken)
            return taken

    def task_done(self) -> None:
        """The consumer finished what it took last."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Blocks until every slot is empty and the consumer is idle (True), or timeout (False)."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while self._busy or self._pending():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        """Wakes the consumer for good and drops whatever is pending."""
        with self._cond:
            self._closed = True
            self._items = [None] * len(self._items)
            self._busy = False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
