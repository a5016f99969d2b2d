"""DDS client for bag replay: frames to a running segmentation node, masks back (for bevanet-demo
and bevanet-bag-eval --through-node; `tools.connect` imports this module only in that mode).

Implements bevanet_core.bags.evaluate.FrameProcessor, with the lockstep of
`bevanet_core.cli.node_client.LockstepClient`.
"""

from __future__ import annotations

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from bevanet_core.cli.node_client import LockstepClient
from bevanet_core.serving.model_loading import pipeline_from_values

from .pipeline import array_to_imgmsg


class NodeClient(LockstepClient):
    """The node runs as deployed, in its own process (`ros2 run bevanet_ros segmentation_node
    --ros-args -r image:=/camera/image_raw`), so the latency measured here includes the DDS
    transport both ways. `child`: the node's process when this tool spawned it."""

    def __init__(
        self,
        input_topic: str,
        mask_topic: str,
        local,
        timeout_s: float = 5.0,
        discovery_s: float = 15.0,
        child=None,
    ):
        super().__init__(local, timeout_s)
        self._rclpy = rclpy
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = rclpy.create_node("bevanet_bag_player")
        reliable = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        # best effort receives from reliable and best-effort publishers alike
        any_pub = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = self.node.create_publisher(Image, input_topic, reliable)
        self.sub = self.node.create_subscription(Image, mask_topic, self._on_mask, any_pub)
        # the node names its pipeline (backend, precision, weights, threads) on /diagnostics
        self.diag_sub = self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

        def ready() -> bool:
            return self.pub.get_subscription_count() > 0 and self.node.count_publishers(mask_topic) > 0

        self.wait_for_node(ready, input_topic, mask_topic, discovery_s, child)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            found = pipeline_from_values((v.key, v.value) for v in status.values)
            if found is not None:
                self.pipeline = found

    def _on_mask(self, msg) -> None:
        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width]
        self.received(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, rows.copy())

    def message(self, rgb, header) -> tuple[Image, int]:
        msg = array_to_imgmsg(rgb, "rgb8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
        msg.header.frame_id = str(header.frame_id)
        return msg, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def send(self, message: Image) -> None:
        self.pub.publish(message)

    def spin(self, timeout_s: float) -> None:
        self._rclpy.spin_once(self.node, timeout_sec=timeout_s)

    def shutdown(self) -> None:
        if self.node is not None:
            self.wait_for_pipeline()
        if self.node is not None:
            self.node.destroy_node()
            self.node = None
        if self._owns_context and self._rclpy.ok():
            self._rclpy.shutdown()
