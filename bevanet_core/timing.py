"""The one timing core: how the project's speed figures are taken and summarised.

`bevanet-bench` and `bevanet-speed` (runtime/benchmark.py: the pipeline and the authors'
protocol), the runtime matrix (benchmarks/bench_runtime.py), the node benchmark
(benchmarks/bench_node.py) and the bag evaluator's latencies all time a call with `time_call`
(`time.perf_counter`, a monotonic high-resolution clock; where work is asynchronous, a device
sync runs before the clock stops) and summarise milliseconds with `latency_stats`, so that a
p50 or a p99 means the same everywhere: numpy's linearly interpolated percentile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

Sync = Optional[Callable[[], None]]


def time_call(fn: Callable[[], Any], sync: Sync = None) -> tuple[float, Any]:
    """(milliseconds `fn()` took, what it returned); `sync()` runs before the clock stops."""
    t0 = time.perf_counter()
    out = fn()
    if sync is not None:
        sync()
    return (time.perf_counter() - t0) * 1e3, out


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 0, sync: Sync = None) -> list[float]:
    """Milliseconds of each of `runs` calls of `fn`, after `warmup` calls that are not timed
    (and a `sync()`, so that no warm-up work is still running when the first timed call starts)."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    return [time_call(fn, sync)[0] for _ in range(runs)]


def latency_stats(latencies_ms: Sequence[float]) -> dict[str, float]:
    """n, p50 (the median), p90, p95, p99, mean, min and max of latencies in milliseconds;
    NaN statistics for an empty list."""
    lat = np.asarray(latencies_ms, dtype=np.float64)
    if lat.size == 0:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p90": nan, "p95": nan, "p99": nan, "mean": nan, "min": nan, "max": nan}
    p50, p90, p95, p99 = (float(v) for v in np.percentile(lat, [50, 90, 95, 99]))
    return {
        "n": int(lat.size),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "mean": float(lat.mean()),
        "min": float(lat.min()),
        "max": float(lat.max()),
    }


def summarize(latencies_ms: Sequence[float], batch: int = 1) -> dict[str, Any]:
    """A benchmark row: p50/p90/p99/mean/min of per-call latencies, and frames per second at the
    median for calls of `batch` frames."""
    stats = latency_stats(latencies_ms)
    p50 = stats["p50"]
    return {
        "latency_ms": {k: stats[k] for k in ("p50", "p90", "p99", "mean", "min")},
        "fps": batch * 1000.0 / p50 if p50 > 0 else float("inf"),
        "runs": stats["n"],
        "batch": batch,
    }
