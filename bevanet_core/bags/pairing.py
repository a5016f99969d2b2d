"""Pairing predictions with labels by header stamp, as they stream in."""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np


class StampPairer:
    """Pairs predictions and labels by header stamp as they stream in, with bounded memory.

    Items wait at most `window_ns` of bag time for their partner, then count as unpaired.
    """

    def __init__(
        self,
        on_pair: Callable[[np.ndarray, np.ndarray, int], None],
        tolerance_ns: int = 0,
        window_ns: int = 10_000_000_000,
    ):
        self.on_pair = on_pair
        self.tolerance_ns = int(tolerance_ns)
        self.window_ns = int(window_ns)
        self.preds: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.labels: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.paired = 0
        self.unpaired_preds: list[int] = []
        self.unpaired_labels: list[int] = []

    def _match(self, table: collections.OrderedDict[int, np.ndarray], stamp: int) -> int | None:
        if stamp in table:
            return stamp
        if self.tolerance_ns <= 0 or not table:
            return None
        best = min(table, key=lambda s: abs(s - stamp))
        return best if abs(best - stamp) <= self.tolerance_ns else None

    def add_pred(self, stamp: int, mask: np.ndarray | None) -> None:
        """A prediction (None: a dropped frame; its label then counts as an unpaired label)."""
        if mask is None:
            hit = self._match(self.labels, stamp)
            if hit is not None:
                self.labels.pop(hit)
                self.unpaired_labels.append(hit)
            return
        hit = self._match(self.labels, stamp)
        if hit is None:
            self.preds[stamp] = mask
        else:
            self._pair(mask, self.labels.pop(hit), stamp)
        self._expire(stamp)

    def add_label(self, stamp: int, label: np.ndarray) -> None:
        hit = self._match(self.preds, stamp)
        if hit is None:
            self.labels[stamp] = label
        else:
            self._pair(self.preds.pop(hit), label, stamp)
        self._expire(stamp)

    def _pair(self, pred: np.ndarray, label: np.ndarray, stamp: int) -> None:
        self.paired += 1
        self.on_pair(pred, label, stamp)

    def _expire(self, now: int) -> None:
        for table, lost in (
            (self.preds, self.unpaired_preds),
            (self.labels, self.unpaired_labels),
        ):
            while table:
                oldest = next(iter(table))
                if now - oldest <= self.window_ns:
                    break
                table.pop(oldest)
                lost.append(oldest)

    def finish(self) -> None:
        """Everything still waiting is unpaired."""
        self.unpaired_preds.extend(self.preds)
        self.unpaired_labels.extend(self.labels)
        self.preds.clear()
        self.labels.clear()
