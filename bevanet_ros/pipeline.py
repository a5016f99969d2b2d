"""Camera messages in, segmentation messages out: the ROS side of one node, in steps that the
plain node runs at construction and the lifecycle node spreads over its transitions.

    load_model -> create_outputs -> create_inputs -> start      (node up / configure + activate)
    stop -> destroy_inputs -> destroy_outputs -> unload_model   (deactivate + cleanup / shutdown)

What needs no ROS (the model, the stream and its worker, health, the Foxglove view, the figures
of the diagnostics) is `bevanet_core.serving.session.NodeSession`; this adds the publishers,
subscriptions and timer. Subscription callbacks hand each message to the stream; its results come
back through `publish_images`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from bevanet_core.serving.encode import fill_image
from bevanet_core.serving.labels import label_info_json
from bevanet_core.serving.outputs import OUTPUTS
from bevanet_core.serving.params import NodeSettings
from bevanet_core.serving.qos import qos_policies
from bevanet_core.serving.session import NodeSession

from .diagnostics import to_status

try:  # vision_msgs comes with a ROS 2 install (or scripts/bootstrap.sh from ../shared/ros-src)
    from vision_msgs.msg import LabelInfo, VisionClass  # type: ignore
except ImportError:
    LabelInfo = None
    VisionClass = None


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


class SegmentationPipeline(NodeSession):
    """The state of one segmentation node between `load_model` and `unload_model`."""

    def __init__(self, node: Node, managed: bool = False) -> None:
        super().__init__()
        self.node = node
        self.managed = managed
        self._subs: list[Any] = []
        self._pubs: list[dict[str, Any]] = []
        self._label_pubs: list[Any] = []
        self._diag_pub: Any = None
        self._diag_timer: Any = None

    @property
    def logger(self) -> Any:
        return self.node.get_logger()

    # ------------------------------------------------------------------ lifecycle steps

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
            self.logger.warning(
                "vision_msgs is not installed: ~/label_info (vision_msgs/LabelInfo) is not "
                "published; ~/label_info_json carries the class names and colours"
            )
        self._diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.start_view()
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
        for i in range(len(s.input_topics)):
            kind = CompressedImage if compressed else Image
            name = s.input_topic(i, self.node.resolve_topic_name)
            callback = functools.partial(self.stream.put, i)
            try:
                sub = self.node.create_subscription(
                    kind, name, callback, input_qos, event_callbacks=self._lost_callbacks(i)
                )
            except UnsupportedEventTypeError:  # an rmw without the event: frames still flow
                sub = self.node.create_subscription(kind, name, callback, input_qos)
            self._subs.append(sub)
            self.logger.info(
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
        super().start(f"{self.node.get_name()}-inference")

    def destroy_inputs(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []

    def destroy_outputs(self) -> None:
        self.close_view()
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

    def shutdown(self) -> None:
        """Every teardown step, safe to call in any state and more than once."""
        self.stop()
        self.destroy_inputs()
        self.destroy_outputs()
        self.unload_model()

    def _require_settings(self) -> NodeSettings:
        if self.settings is None or self.segmenter is None:
            raise RuntimeError("load_model() must run first")
        return self.settings

    # ------------------------------------------------------------------ transport of the session

    def publish_images(self, camera: int, images: dict[str, tuple[Any, str]], header: Any) -> None:
        pubs = self._pubs[camera]
        for name, (image, encoding) in images.items():
            pubs[name].publish(array_to_imgmsg(image, encoding, header))

    def subscribed(self, camera: int, output: str) -> bool:
        return self._pubs[camera][output].get_subscription_count() > 0

    # ------------------------------------------------------------------ diagnostics

    def diagnostic_status(self) -> DiagnosticStatus:
        """The node's own status as one DiagnosticStatus (also used by tests)."""
        return to_status(self.node_report(), self.node.get_fully_qualified_name())

    def health_statuses(self) -> list[DiagnosticStatus]:
        """One status per camera: camera and model health (also used by tests)."""
        name = self.node.get_fully_qualified_name()
        return [to_status(report, name, updater=True) for report in self.camera_reports()]

    def publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [*self.health_statuses(), self.diagnostic_status()]  # the node's own status last
        self._diag_pub.publish(msg)
