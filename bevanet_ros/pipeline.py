"""Camera messages in, segmentation messages out: the ROS side of one node, in steps that the
plain node runs at construction and the lifecycle node spreads over its transitions.

    load_model -> create_outputs -> create_inputs -> start      (node up / configure + activate)
    stop -> destroy_inputs -> destroy_outputs -> unload_model   (deactivate + cleanup / shutdown)

Subscription callbacks hand each message to `bevanet_core.serving.StreamSegmenter` (latest frame
per camera, one worker thread, batching, statistics); its results come back here to be published.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from bevanet_core.serving.encode import fill_image
from bevanet_core.serving.foxglove_view import start_foxglove_view
from bevanet_core.serving.labels import label_info_json
from bevanet_core.serving.model_loading import describe_load, load_segmenter, pipeline_values, unload_segmenter
from bevanet_core.serving.outputs import render_outputs
from bevanet_core.serving.params import NodeSettings
from bevanet_core.serving.qos import qos_policies
from bevanet_core.serving.stream import StreamResult, StreamSegmenter

from .health_diagnostics import CameraHealth

try:  # vision_msgs comes with a ROS 2 install (or scripts/bootstrap.sh from ../shared/ros-src)
    from vision_msgs.msg import LabelInfo, VisionClass  # type: ignore
except ImportError:
    LabelInfo = None
    VisionClass = None

OUTPUTS = ("mask", "color_mask", "overlay", "confidence")


def qos(name: str, depth: int = 1) -> QoSProfile:
    """The QoS profile `name` of `bevanet_core.serving.qos` (sensor_data, reliable, latched, ...)."""
    reliability, durability, depth = qos_policies(name, depth)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy[reliability],
        durability=DurabilityPolicy[durability],
    )


def array_to_imgmsg(array: np.ndarray, encoding: str, header: Any = None) -> Image:
    """HxW (mono8) or HxWx3 (rgb8) uint8 array -> `sensor_msgs/Image` with `header` copied."""
    return fill_image(Image(), array, encoding, header)


class SegmentationPipeline:
    """The state of one segmentation node between `load_model` and `unload_model`."""

    def __init__(self, node: Node, managed: bool = False) -> None:
        self.node = node
        self.managed = managed
        self.settings: NodeSettings | None = None
        self.segmenter: Any = None
        self.stream: StreamSegmenter | None = None
        self._subs: list[Any] = []
        self._pubs: list[dict[str, Any]] = []
        self._label_pubs: list[Any] = []
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._foxglove: Any = None
        self._last_reported_errors = 0
        self.health: CameraHealth | None = None
        self.active = False

    # ------------------------------------------------------------------ lifecycle steps

    def load_model(self, settings: NodeSettings) -> None:
        """Builds the segmenter (and warms it up). Raises ModelLoadError."""
        self.settings = settings
        self.segmenter = load_segmenter(settings)
        for line in describe_load(self.segmenter, settings):
            self.node.get_logger().info(line)
        self.health = CameraHealth(settings, list(self.segmenter.info.class_names), self.node.get_logger())
        self.stream = StreamSegmenter(
            self.segmenter,
            settings.cameras,
            on_result=self._publish,
            report=lambda kind, message: self.node.get_logger().error(message),
            confidence=self._confidence_wanted,
            batch_window_ms=settings.batch_window_ms,
            error_log_period_s=settings.error_log_period_s,
        )

    def create_outputs(self) -> None:
        """Publishers for every camera, the latched label info, and the diagnostics timer."""
        s = self._require_settings()
        make = self.node.create_lifecycle_publisher if self.managed else self.node.create_publisher
        output = qos(s.output_qos, s.output_qos_depth)
        self._pubs = [
            {name: make(Image, s.output_prefix(i) + name, output) for name in OUTPUTS}
            for i in range(len(s.input_topics))
        ]
        # ~/label_info is vision_msgs/LabelInfo or absent, never another type under the same
        # name; ~/label_info_json (names and colours) is there on every install
        self._label_pubs = [make(String, "~/label_info_json", qos("latched"))]
        if LabelInfo is not None:
            self._label_pubs.append(make(LabelInfo, "~/label_info", qos("latched")))
        else:
            self.node.get_logger().warning(
                "vision_msgs is not installed: ~/label_info (vision_msgs/LabelInfo) is not "
                "published; ~/label_info_json carries the class names and colours"
            )
        self._diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if s.foxglove_port:
            self._foxglove = start_foxglove_view(s.foxglove_port, s.foxglove_address)
            self.node.get_logger().info(f"Foxglove live view of camera {s.cameras[0]!r} on {self._foxglove.url}")
        self._diag_timer = self.node.create_timer(s.diagnostics_period_s, self.publish_diagnostics)

    def publish_label_info(self) -> None:
        """Publishes the class names and colours once (latched: late subscribers get them)."""
        info = self.segmenter.info
        text = label_info_json(
            info.class_names,
            info.palette,
            ignore_index=info.ignore_index,
            variant=info.variant,
            dataset=info.dataset or "",
        )
        for pub in self._label_pubs:
            if pub.msg_type is String:
                pub.publish(String(data=text))
            else:
                msg = LabelInfo()
                msg.header.stamp = self.node.get_clock().now().to_msg()
                msg.class_map = [VisionClass(class_id=i, class_name=n) for i, n in enumerate(info.class_names)]
                msg.threshold = 0.0
                pub.publish(msg)

    def create_inputs(self) -> None:
        """One subscription per camera: raw Image, or CompressedImage on <topic>/compressed."""
        s = self._require_settings()
        input_qos = qos(s.input_qos, s.input_qos_depth)
        compressed = s.input_transport == "compressed"
        self._subs = []
        for i, topic in enumerate(s.input_topics):
            kind = CompressedImage if compressed else Image
            name = self.node.resolve_topic_name(topic) + "/compressed" if compressed else topic
            callback = functools.partial(self.stream.put, i)
            try:
                sub = self.node.create_subscription(
                    kind, name, callback, input_qos, event_callbacks=self._lost_callbacks(i)
                )
            except UnsupportedEventTypeError:  # an rmw without the event: frames still flow
                sub = self.node.create_subscription(kind, name, callback, input_qos)
            self._subs.append(sub)
            self.node.get_logger().info(
                f"camera {s.cameras[i]!r}: {sub.topic_name} "
                f"({s.input_transport}, QoS {s.input_qos}) -> "
                f"{self.node.resolve_topic_name(s.output_prefix(i) + 'mask')}"
            )

    def _lost_callbacks(self, camera: int) -> Any:
        """DDS 'message lost' events of camera `camera`'s subscription, counted by the stream: a
        frame lost in transport (e.g. one UDP fragment of an 8000x6000 raw frame over best-effort
        QoS) never reaches the callback, so without this it would vanish without a trace."""
        stream = self.stream

        def lost(info: Any) -> None:
            if stream is not None:
                stream.on_lost(camera, int(info.total_count_change))

        return SubscriptionEventCallbacks(message_lost=lost)

    def start(self) -> None:
        """Starts the inference worker."""
        if self.stream is None:
            raise RuntimeError("create_inputs() must run before start()")
        self.stream.start(name=f"{self.node.get_name()}-inference")
        self.active = True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the worker after the batch in flight (pending frames are dropped)."""
        self.active = False
        if self.stream is not None and not self.stream.stop(timeout_s):
            self.node.get_logger().warning(f"inference worker did not stop within {timeout_s} s")

    def destroy_inputs(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []

    def destroy_outputs(self) -> None:
        if self._foxglove is not None:
            self._foxglove.close()
            self._foxglove = None
        destroy = self.node.destroy_lifecycle_publisher if self.managed else self.node.destroy_publisher
        for pub in [p for pubs in self._pubs for p in pubs.values()] + self._label_pubs:
            destroy(pub)
        self._pubs, self._label_pubs = [], []
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.node.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    def unload_model(self) -> None:
        """Frees the model (and GPU memory)."""
        if self.segmenter is not None:
            unload_segmenter(self.segmenter)
            self.segmenter = None

    def shutdown(self) -> None:
        """Every teardown step, safe to call in any state and more than once."""
        self.stop()
        self.destroy_inputs()
        self.destroy_outputs()
        self.unload_model()

    def update_settings(self, settings: NodeSettings) -> None:
        """Applies dynamic parameters (alpha, which outputs, batch window, log period)."""
        self.settings = settings
        if self.stream is not None:
            self.stream.batch_window_ms = settings.batch_window_ms
            self.stream.throttle.period_s = settings.error_log_period_s
        if self.health is not None:
            self.health.apply(settings)

    def _require_settings(self) -> NodeSettings:
        if self.settings is None or self.segmenter is None:
            raise RuntimeError("load_model() must run first")
        return self.settings

    # ------------------------------------------------------------------ worker side

    def _confidence_wanted(self, cameras: list[int]) -> bool:
        if self.settings.health_checks:  # the model's health reads the calibrated confidence
            return True
        return self.settings.publish_confidence and any(
            self._pubs[i]["confidence"].get_subscription_count() > 0 for i in cameras
        )

    def _publish(self, out: StreamResult) -> None:
        pubs, header = self._pubs[out.camera], out.msg.header
        view = self._foxglove is not None and out.camera == 0
        watched = {name: pubs[name].get_subscription_count() > 0 for name in ("color_mask", "overlay")}
        images, color, overlay = render_outputs(out.result, out.rgb, self.segmenter, self.settings, watched, view)
        for name, (image, encoding) in images.items():
            pubs[name].publish(array_to_imgmsg(image, encoding, header))
        if self.health is not None:
            self.health.update(out.camera, out.msg, out.rgb, out.result)
        if view:
            stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            latency_ms = (time.monotonic() - out.received) * 1000.0
            self._foxglove.publish(stamp_ns, out.rgb, color, overlay, latency_ms, header.frame_id)

    # ------------------------------------------------------------------ diagnostics

    def diagnostic_status(self) -> DiagnosticStatus:
        """The node's health as one DiagnosticStatus (also used by tests)."""
        s = self.settings
        status = DiagnosticStatus()
        status.name = f"{self.node.get_fully_qualified_name()}: semantic segmentation"
        # the backend that runs, also when 'auto' chose it
        backend = self.segmenter.backend.name if self.segmenter is not None else None
        if s is None:
            status.hardware_id = "unconfigured"
        else:
            status.hardware_id = f"{backend or s.backend}:{s.device}"
        snap = self.stream.stats.snapshot() if self.stream is not None else {}
        errors = (
            int(snap.get("frames_bad", 0))
            + int(snap.get("inference_errors", 0))
            + int(snap.get("frames_lost_in_transport", 0))
        )
        new_errors = errors - self._last_reported_errors
        self._last_reported_errors = errors
        if not self.active:
            status.level, status.message = DiagnosticStatus.OK, "inactive"
        elif new_errors > 0:
            status.level = DiagnosticStatus.ERROR
            status.message = (
                f"{new_errors} bad frames or inference errors since the last report: {snap.get('last_error')}"
            )
        elif snap.get("frames_received", 0) == 0:
            status.level, status.message = DiagnosticStatus.WARN, "no camera frames received yet"
        else:
            status.level = DiagnosticStatus.OK
            status.message = (
                f"{snap['output_rate_hz']:.1f} Hz out, "
                f"inference {snap['inference_ms_mean']:.1f} ms, "
                f"end-to-end {snap['end_to_end_ms_mean']:.1f} ms"
            )
        status.values = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in snap.items()]
        if self.segmenter is not None:  # what runs, for tools that measure the node from outside
            status.values += [KeyValue(key=k, value=v) for k, v in pipeline_values(self.segmenter.pipeline)]
        return status

    def health_statuses(self) -> list[DiagnosticStatus]:
        """One status per camera: camera and model health (also used by tests)."""
        if self.health is None:
            return []
        return self.health.statuses(self.node.get_fully_qualified_name())

    def publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [*self.health_statuses(), self.diagnostic_status()]  # the node's own status last
        self._diag_pub.publish(msg)
