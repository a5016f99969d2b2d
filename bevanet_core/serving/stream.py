"""Camera messages in, segmentation results out, off the caller's thread: what the ROS node runs,
and what the bag evaluator calls frame by frame.

    stream = StreamSegmenter(segmenter, ["front", "rear"], on_result=publish)
    stream.start()
    stream.put(0, msg)        # from a subscription callback: O(1), never blocks on inference
    ...
    stream.stop()

`put` drops each message into its camera's latest-frame slot (a frame not taken yet is replaced
and counted as stale). One worker thread takes what arrived together, decodes it with the one
decoder (`serving.decode`), runs one batched inference (frame by frame when the runtime rejects
the batch, so one bad camera does not take the others down) and hands every result to
`on_result`. `segment_messages` is the same decode-and-segment step, called directly, so an
offline evaluation produces exactly the node's masks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .decode import ImageDecodeError, message_to_rgb
from .slots import LatestFrameSlots
from .stats import LogThrottle, StreamStats


@dataclass
class StreamResult:
    """One segmented frame: the camera index, the input message (for its header), the decoded
    RGB frame, the runtime's `SegmentationResult` and when `put` received the message."""

    camera: int
    msg: Any
    rgb: np.ndarray
    result: Any
    received: float


class StreamSegmenter:
    """Latest-frame slots, the worker thread, batching across cameras, statistics and throttled
    error reports around one `bevanet_core.runtime.Segmenter`.

    `on_result(result)` runs on the worker thread for every segmented frame; `report(kind,
    message)` gets at most one message per problem kind every `error_log_period_s` (with the
    number suppressed since), while every problem is counted in `stats`. `confidence(cameras)`
    says whether a batch of those camera indices needs the confidence map.
    """

    def __init__(
        self,
        segmenter: Any,
        cameras: Sequence[str],
        on_result: Callable[[StreamResult], None] | None = None,
        report: Callable[[str, str], None] | None = None,
        confidence: Callable[[Sequence[int]], bool] = lambda cameras: False,
        batch_window_ms: float = 5.0,
        error_log_period_s: float = 5.0,
    ) -> None:
        self.segmenter = segmenter
        self.cameras = list(cameras)
        self.on_result = on_result
        self.report = report
        self.confidence = confidence
        self.batch_window_ms = float(batch_window_ms)
        self.stats = StreamStats(self.cameras)
        self.throttle = LogThrottle(error_log_period_s)
        self._slots = LatestFrameSlots(len(self.cameras))
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ caller side
    def put(self, camera: int, msg: Any) -> None:
        """Keeps `msg` as camera `camera`'s newest frame (no decoding here)."""
        if self._slots.closed:
            return
        self.stats.on_received(self.cameras[camera])
        if self._slots.put(camera, (msg, time.monotonic())):
            self.stats.on_dropped()

    def on_lost(self, camera: int, count: int) -> None:
        """The transport says `count` messages of camera `camera` were lost before arriving (a
        DDS sample whose fragments did not all arrive never reaches a callback): counted and
        reported like a bad frame, since nothing else would ever show it."""
        if count <= 0:
            return
        text = (
            f"camera {self.cameras[camera]!r}: {count} frame(s) lost in transport before they "
            "reached the node; a large raw frame over best-effort QoS is lost whenever one of "
            "its UDP fragments is (use input_qos reliable, compressed transport, or smaller "
            "frames)"
        )
        self.stats.on_lost(self.cameras[camera], count, text)
        self._report("lost", text)

    def start(self, name: str = "segmentation-worker") -> None:
        """Starts the worker thread (again after `stop`: statistics carry on)."""
        if self._slots.closed:
            self._slots = LatestFrameSlots(len(self.cameras))
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stops the worker after the batch in flight; pending frames are dropped. False when the
        worker did not end within `timeout_s`."""
        self._stop.set()
        self._slots.close()
        worker, self._worker = self._worker, None
        if worker is None or worker.ident is None:  # none, or interrupted before it started
            return True
        worker.join(timeout_s)
        return not worker.is_alive()

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every frame put so far has been segmented or dropped (False on timeout)."""
        return self._slots.wait_idle(timeout_s)

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    # ------------------------------------------------------------------ segmentation
    def segment_messages(self, items: Sequence[tuple[int, Any, float]], confidence: bool = False) -> list[StreamResult]:
        """Decodes and segments (camera, message, received) items in one batch. Frames that do
        not decode are counted by kind, reported and left out; the rest come back in order."""
        decoded = []
        for camera, msg, received in items:
            try:
                decoded.append((camera, msg, message_to_rgb(msg), received))
            except ImageDecodeError as exc:
                text = f"camera {self.cameras[camera]!r}: dropped a frame: {exc}"
                self.stats.on_bad_frame(exc.kind, text)
                self._report(exc.kind, text)
        if not decoded:
            return []
        t0 = time.perf_counter()
        results = self.segment_frames([d[2] for d in decoded], [d[0] for d in decoded], confidence)
        self.stats.on_batch((time.perf_counter() - t0) * 1000.0)
        return [
            StreamResult(camera, msg, rgb, res, received)
            for (camera, msg, rgb, received), res in zip(decoded, results, strict=True)
            if res is not None
        ]

    def segment_frames(
        self,
        frames: Sequence[np.ndarray],
        cameras: Sequence[int] | None = None,
        confidence: bool = False,
    ) -> list[Any | None]:
        """RGB frames of `cameras` (default: camera 0 for all) -> the runtime's results in one
        batch; None for a frame the runtime rejects (counted and reported)."""
        seg = self.segmenter
        frames = list(frames)
        cameras = [0] * len(frames) if cameras is None else list(cameras)
        try:
            return list(seg.segment_batch(frames, "rgb8", confidence=confidence))
        except ValueError:
            if len(frames) == 1:
                raise
        # a frame the runtime rejects must not take the other cameras down: one by one
        results: list[Any | None] = []
        for frame, camera in zip(frames, cameras, strict=True):
            try:
                results.append(seg.segment(frame, "rgb8", confidence=confidence))
            except ValueError as exc:
                self.stats.on_inference_error(str(exc))
                self._report("inference", f"camera {self.cameras[camera]!r}: {exc}")
                results.append(None)
        return results

    def _report(self, kind: str, message: str) -> None:
        allowed, suppressed = self.throttle.allow(kind)
        if allowed and self.report is not None:
            more = f" ({suppressed} more like this since the last report)" if suppressed else ""
            self.report(kind, message + more)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        slots = self._slots
        while not self._stop.is_set():
            taken = slots.take(batch_window_s=self.batch_window_ms / 1000.0, timeout_s=0.25)
            if not taken:
                continue
            try:
                items = [(camera, msg, received) for camera, (msg, received) in taken]
                want = self.confidence([camera for camera, _, _ in items])
                for out in self.segment_messages(items, confidence=want):
                    if self.on_result is not None:
                        self.on_result(out)
                    self.stats.on_published((time.monotonic() - out.received) * 1000.0)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                self.stats.on_inference_error(f"{type(exc).__name__}: {exc}")
                self._report("internal", f"segmentation failed: {type(exc).__name__}: {exc}")
            finally:
                slots.task_done()
