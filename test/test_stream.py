"""StreamSegmenter without ROS: latest-frame slots, the worker, batching with per-frame fallback,
bad frames counted by kind, throttled reports, and results equal to the bare runtime's."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from bevanet_core.serving.stream import StreamSegmenter

pytestmark = pytest.mark.usefixtures("one_thread")


def rgb8(rgb: np.ndarray, stamp: int = 0):
    """An object with sensor_msgs/Image's fields."""
    h, w = rgb.shape[:2]
    return SimpleNamespace(
        encoding="rgb8",
        height=h,
        width=w,
        step=3 * w,
        data=rgb.tobytes(),
        is_bigendian=0,
        header=SimpleNamespace(stamp=stamp),
    )


class CountingSegmenter:
    """Stands in for the runtime: the mask is the frame's red channel; frames wider than
    `max_width` are rejected the way the runtime rejects a frame (ValueError)."""

    def __init__(self, max_width: int = 1000):
        self.max_width = max_width
        self.batches: list[int] = []
        self.singles = 0

    def _check(self, frame):
        if frame.shape[1] > self.max_width:
            raise ValueError(f"frame width {frame.shape[1]} > {self.max_width}")

    def segment_batch(self, frames, encoding, confidence=False):
        self.batches.append(len(frames))
        for f in frames:
            self._check(f)
        return [SimpleNamespace(mask=f[:, :, 0].copy()) for f in frames]

    def segment(self, frame, encoding, confidence=False):
        self.singles += 1
        self._check(frame)
        return SimpleNamespace(mask=frame[:, :, 0].copy())


def frame(value: int, w: int = 8, h: int = 4) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_one_batch_for_frames_that_arrive_together_and_a_result_each():
    seg = CountingSegmenter()
    got = []
    stream = StreamSegmenter(seg, ["front", "rear"], on_result=got.append, batch_window_ms=0.0)
    stream.put(0, rgb8(frame(10)))
    stream.put(1, rgb8(frame(20)))
    stream.start()
    assert stream.wait_idle(10.0)
    stream.stop()
    assert seg.batches == [2] and seg.singles == 0
    assert sorted((r.camera, int(r.result.mask[0, 0])) for r in got) == [(0, 10), (1, 20)]
    snap = stream.stats.snapshot()
    assert snap["frames_received"] == 2 and snap["frames_published"] == 2 and snap["batches"] == 1


def test_a_frame_the_runtime_rejects_falls_back_to_one_by_one():
    seg = CountingSegmenter(max_width=10)
    reports = []
    stream = StreamSegmenter(seg, ["a", "b"], report=lambda kind, text: reports.append(kind))
    out = stream.segment_messages([(0, rgb8(frame(1, w=16)), 0.0), (1, rgb8(frame(2)), 0.0)])
    assert seg.batches == [2] and seg.singles == 2  # the batch failed, then each frame alone
    assert [(r.camera, int(r.result.mask[0, 0])) for r in out] == [(1, 2)]
    assert stream.stats.inference_errors == 1 and reports == ["inference"]
    with pytest.raises(ValueError):  # a single frame is not retried: the caller sees why
        stream.segment_frames([frame(1, w=16)])


def test_bad_frames_are_counted_by_kind_and_reported_once_per_period():
    stream = StreamSegmenter(CountingSegmenter(), ["cam"], error_log_period_s=60.0)
    reports = []
    stream.report = lambda kind, text: reports.append((kind, text))
    bad = rgb8(frame(1))
    bad.encoding = "rgb32"
    short = rgb8(frame(1))
    short.data = short.data[:-5]
    for msg in (bad, bad, short):
        assert stream.segment_messages([(0, msg, 0.0)]) == []
    assert dict(stream.stats.bad_frames) == {"unknown_encoding": 2, "data_length": 1}
    assert [k for k, _ in reports] == ["unknown_encoding", "data_length"]
    assert "camera 'cam': dropped a frame: unsupported image encoding 'rgb32'" in reports[0][1]


def test_newest_frame_wins_and_stale_ones_are_counted():
    seg = CountingSegmenter()
    got = []
    stream = StreamSegmenter(seg, ["cam"], on_result=got.append)
    for value in (1, 2, 3):  # the worker is not running yet: each put replaces the last
        stream.put(0, rgb8(frame(value)))
    stream.start()
    assert stream.wait_idle(10.0)
    stream.stop()
    assert [int(r.result.mask[0, 0]) for r in got] == [3]
    assert stream.stats.dropped_stale == 2


def test_the_worker_survives_a_failing_callback_and_restarts_after_stop():
    calls = threading.Event()

    def boom(result):
        calls.set()
        raise RuntimeError("publisher gone")

    reports = []
    stream = StreamSegmenter(
        CountingSegmenter(), ["cam"], on_result=boom, report=lambda kind, text: reports.append(kind)
    )
    stream.start()
    stream.put(0, rgb8(frame(5)))
    assert stream.wait_idle(10.0) and calls.is_set()
    assert stream.running and reports == ["internal"] and stream.stats.inference_errors == 1
    assert stream.stop()
    stream.put(0, rgb8(frame(6)))  # stopped: ignored
    assert stream.stats.snapshot()["frames_received"] == 1
    stream.on_result = lambda r: None
    stream.start()  # again, statistics carry on
    stream.put(0, rgb8(frame(7)))
    assert stream.wait_idle(10.0)
    assert stream.stop() and stream.stats.snapshot()["frames_received"] == 2


def test_masks_equal_the_bare_runtime(tmp_path):
    import torch

    from bevanet_core.checkpoint import ModelInfo
    from bevanet_core.deploy import condition_for_parity
    from bevanet_core.models import build_model
    from bevanet_core.runtime import Segmenter

    torch.manual_seed(0)
    model = condition_for_parity(build_model("bevanet_s", num_classes=11).eval())
    seg = Segmenter.from_model(model, ModelInfo.default("bevanet_s", 11), input_size=(64, 48))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    stream = StreamSegmenter(seg, ["a", "b", "c"])
    out = stream.segment_messages([(i, rgb8(f), 0.0) for i, f in enumerate(frames)])
    for r, f in zip(out, frames, strict=True):
        np.testing.assert_array_equal(r.result.mask, seg.segment(f, "rgb8").mask)
        np.testing.assert_array_equal(r.rgb, f)
