"""Rates, latency windows, counters and per-problem log throttling for a stream's diagnostics.

`StreamSegmenter` feeds these; the node turns `StreamStats.snapshot()` into a
`diagnostic_msgs/DiagnosticStatus`; tests check them directly with explicit clocks.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second in the last `window_s` (0.0 with fewer than two events)."""
        now = self._clock() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyWindow:
    """The last `size` samples (milliseconds) with mean / percentiles / max."""

    def __init__(self, size: int = 200) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._samples: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, value_ms: float) -> None:
        self._samples.append(float(value_ms))

    def __len__(self) -> int:
        return len(self._samples)

    def summary(self) -> dict[str, float]:
        """{'mean','p50','p95','max','n'}; zeros when empty."""
        values = sorted(self._samples)
        if not values:
            return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0, "n": 0}
        return {
            "mean": sum(values) / len(values),
            "p50": percentile(values, 50.0),
            "p95": percentile(values, 95.0),
            "max": values[-1],
            "n": len(values),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted, non-empty list."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class LogThrottle:
    """Lets one message per problem kind through every `period_s`; counts the rest, so the next
    message can say how many were suppressed."""

    def __init__(self, period_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = collections.Counter()

    def allow(self, kind: str) -> tuple[bool, int]:
        """(should_log, suppressed_since_last_log)."""
        now = self._clock()
        last = self._last.get(kind)
        if last is None or now - last >= self.period_s:
            self._last[kind] = now
            count = self._suppressed.pop(kind, 0)
            return True, count
        self._suppressed[kind] += 1
        return False, 0


class StreamStats:
    """Thread-safe counters and windows for one stream (all cameras)."""

    def __init__(self, cameras: list[str], window_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.cameras = list(cameras)
        self.input_rate = {c: RateMeter(window_s, clock) for c in self.cameras}
        self.output_rate = RateMeter(window_s, clock)
        self.inference_ms = LatencyWindow()
        self.end_to_end_ms = LatencyWindow()
        self.received: dict[str, int] = {c: 0 for c in self.cameras}
        self.published = 0
        self.dropped_stale = 0
        self.bad_frames: dict[str, int] = collections.Counter()
        # frames the transport reported lost before they reached the node (DDS "message lost")
        self.lost: dict[str, int] = {c: 0 for c in self.cameras}
        self.inference_errors = 0
        self.batches = 0
        self.last_error = ""

    def on_received(self, camera: str) -> None:
        with self._lock:
            self.received[camera] = self.received.get(camera, 0) + 1
            self.input_rate[camera].tick()

    def on_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped_stale += count

    def on_bad_frame(self, kind: str, message: str) -> None:
        with self._lock:
            self.bad_frames[kind] += 1
            self.last_error = message

    def on_lost(self, camera: str, count: int, message: str) -> None:
        with self._lock:
            self.lost[camera] = self.lost.get(camera, 0) + count
            self.last_error = message

    def on_inference_error(self, message: str) -> None:
        with self._lock:
            self.inference_errors += 1
            self.last_error = message

    def on_batch(self, inference_ms: float) -> None:
        with self._lock:
            self.batches += 1
            self.inference_ms.add(inference_ms)

    def on_published(self, end_to_end_ms: float) -> None:
        with self._lock:
            self.published += 1
            self.output_rate.tick()
            self.end_to_end_ms.add(end_to_end_ms)

    @property
    def total_bad(self) -> int:
        with self._lock:
            return sum(self.bad_frames.values())

    def snapshot(self) -> dict[str, object]:
        """A flat, JSON-friendly view of everything (rates in Hz, latencies in ms)."""
        with self._lock:
            now = self._clock()
            inf = self.inference_ms.summary()
            e2e = self.end_to_end_ms.summary()
            out: dict[str, object] = {
                "frames_received": sum(self.received.values()),
                "frames_published": self.published,
                "frames_dropped_stale": self.dropped_stale,
                "frames_bad": sum(self.bad_frames.values()),
                "frames_lost_in_transport": sum(self.lost.values()),
                "inference_errors": self.inference_errors,
                "batches": self.batches,
                "output_rate_hz": self.output_rate.rate(now),
                "inference_ms_mean": inf["mean"],
                "inference_ms_p95": inf["p95"],
                "inference_ms_max": inf["max"],
                "end_to_end_ms_mean": e2e["mean"],
                "end_to_end_ms_p95": e2e["p95"],
                "end_to_end_ms_max": e2e["max"],
                "last_error": self.last_error,
            }
            for cam in self.cameras:
                out[f"input_rate_hz[{cam}]"] = self.input_rate[cam].rate(now)
                out[f"frames_received[{cam}]"] = self.received.get(cam, 0)
                if self.lost.get(cam):
                    out[f"frames_lost_in_transport[{cam}]"] = self.lost[cam]
            for kind, count in sorted(self.bad_frames.items()):
                out[f"frames_bad[{kind}]"] = count
            return out
