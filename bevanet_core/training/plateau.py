"""When a validated curve has stopped rising: the gain of its best figure over the last window of
iterations. A run given `run.plateau_window` ends once that gain falls under `run.plateau_gain`,
and the held-out figure stored with a shipped model carries its curve and gain."""

from __future__ import annotations

from typing import Optional


def window_gain(history: list[dict], window: int, key: str = "val_miou") -> Optional[float]:
    """The best figure validated in the last `window` iterations minus the best validated at or
    before the window's start: how much the curve rose over the window (negative where it fell).
    None while the history does not reach back a whole window."""
    points = [(int(h["iteration"]), float(h[key])) for h in history if h.get(key) is not None]
    if window <= 0 or not points:
        return None
    start = points[-1][0] - window
    before = [value for iteration, value in points if iteration <= start]
    within = [value for iteration, value in points if iteration > start]
    if not before or not within:
        return None
    return max(within) - max(before)


def is_flat(history: list[dict], window: int, min_gain: float, key: str = "val_miou") -> bool:
    """Whether the curve rose less than `min_gain` over its last `window` iterations."""
    gain = window_gain(history, window, key)
    return gain is not None and gain < min_gain
