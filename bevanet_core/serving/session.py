"""The ROS-free half of a segmentation node, between loading its model and unloading it: the
settings, the segmenter, the stream (`StreamSegmenter`: latest frame per camera, one worker
thread, batching, statistics), the camera and model health, the Foxglove live view, and the
figures of the node's diagnostics.

The node's pipeline (`bevanet_ros.pipeline`) derives from `NodeSession` and adds the transport:
its subscriptions hand each message to `stream.put`, and it implements `publish_images` and
`subscribed` (who listens to which output of which camera).
"""

from __future__ import annotations

import time
from typing import Any

from .camera_health import CameraHealth
from .diagnostics import NodeStatus, StatusReport
from .foxglove_view import start_foxglove_view
from .model_loading import describe_load, load_segmenter, pipeline_values, unload_segmenter
from .outputs import render_outputs
from .params import NodeSettings
from .stream import StreamResult, StreamSegmenter


class NodeSession:
    """The state of one node's segmentation; `logger` has `info`, `warning` and `error`."""

    def __init__(self, logger: Any = None) -> None:
        self._logger = logger
        self.settings: NodeSettings | None = None
        self.segmenter: Any = None
        self.stream: StreamSegmenter | None = None
        self.health: CameraHealth | None = None
        self.view: Any = None  # the Foxglove live view of the first camera
        self.status = NodeStatus()
        self.active = False

    @property
    def logger(self) -> Any:
        return self._logger

    # ------------------------------------------------------------------ transport (the node's)

    def publish_images(self, camera: int, images: dict[str, tuple[Any, str]], header: Any) -> None:
        """Publishes {output name: (HxW or HxWx3 uint8 array, encoding)} of `camera` with `header`."""
        raise NotImplementedError

    def subscribed(self, camera: int, output: str) -> bool:
        """Whether anyone listens to `output` ('color_mask', 'overlay', 'confidence') of `camera`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ steps

    def load_model(self, settings: NodeSettings) -> None:
        """Builds the segmenter (and warms it up), the health monitors and the stream. Raises
        ModelLoadError."""
        self.settings = settings
        self.segmenter = load_segmenter(settings)
        for line in describe_load(self.segmenter, settings):
            self.logger.info(line)
        self.health = CameraHealth(settings, list(self.segmenter.info.class_names), self.logger)
        self.stream = StreamSegmenter(
            self.segmenter,
            settings.cameras,
            on_result=self._on_result,
            report=lambda kind, message: self.logger.error(message),
            confidence=self._confidence_wanted,
            batch_window_ms=settings.batch_window_ms,
            error_log_period_s=settings.error_log_period_s,
        )

    def start_view(self) -> None:
        """Starts the Foxglove live view when `foxglove_port` asks for one."""
        s = self.settings
        if s is not None and s.foxglove_port:
            self.view = start_foxglove_view(s.foxglove_port, s.foxglove_address)
            self.logger.info(f"Foxglove live view of camera {s.cameras[0]!r} on {self.view.url}")

    def close_view(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None

    def start(self, thread_name: str) -> None:
        """Starts the inference worker."""
        if self.stream is None:
            raise RuntimeError("create_inputs() must run before start()")
        self.stream.start(name=thread_name)
        self.active = True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the worker after the batch in flight (pending frames are dropped)."""
        self.active = False
        if self.stream is not None and not self.stream.stop(timeout_s):
            self.logger.warning(f"inference worker did not stop within {timeout_s} s")

    def unload_model(self) -> None:
        """Frees the model (and GPU memory)."""
        if self.segmenter is not None:
            unload_segmenter(self.segmenter)
            self.segmenter = None

    def update_settings(self, settings: NodeSettings) -> None:
        """Applies dynamic parameters (alpha, which outputs, batch window, log period, health)."""
        self.settings = settings
        if self.stream is not None:
            self.stream.batch_window_ms = settings.batch_window_ms
            self.stream.throttle.period_s = settings.error_log_period_s
        if self.health is not None:
            self.health.apply(settings)

    # ------------------------------------------------------------------ diagnostics

    def node_report(self) -> StatusReport:
        """The node's own status now (see `diagnostics.NodeStatus`)."""
        backend = self.segmenter.backend.name if self.segmenter is not None else None
        snap = self.stream.stats.snapshot() if self.stream is not None else {}
        report = self.status.report(self.settings, backend, snap, self.active)
        if self.segmenter is not None:  # what runs, for tools that measure the node from outside
            report.values.update(pipeline_values(self.segmenter.pipeline))
        return report

    def camera_reports(self) -> list[StatusReport]:
        """One status per camera: camera and model health."""
        return [] if self.health is None else self.health.reports()

    # ------------------------------------------------------------------ worker side

    def _confidence_wanted(self, cameras: list[int]) -> bool:
        if self.settings.health_checks:  # the model's health reads the calibrated confidence
            return True
        return self.settings.publish_confidence and any(self.subscribed(i, "confidence") for i in cameras)

    def _on_result(self, out: StreamResult) -> None:
        header = out.msg.header
        view = self.view is not None and out.camera == 0
        watched = {name: self.subscribed(out.camera, name) for name in ("color_mask", "overlay")}
        images, color, overlay = render_outputs(out.result, out.rgb, self.segmenter, self.settings, watched, view)
        self.publish_images(out.camera, images, header)
        if self.health is not None:
            self.health.update(out.camera, out.msg, out.rgb, out.result)
        if view:
            stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            latency_ms = (time.monotonic() - out.received) * 1000.0
            self.view.publish(stamp_ns, out.rgb, color, overlay, latency_ms, header.frame_id)
