"""DDS client for bag replay: frames to a running segmentation node, masks back (for bevanet-demo
and bevanet-bag-eval --through-node; `tools.connect` imports this module only in that mode).

Implements bevanet_core.bags.evaluate.FrameProcessor.
"""

from __future__ import annotations

import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from bevanet_core.cli.node_process import exited
from bevanet_core.serving.model_loading import pipeline_from_values

from .pipeline import array_to_imgmsg

PIPELINE_WAIT_S = 3.0  # longer than the node's default diagnostics period


class NodeClient:
    """FrameProcessor over DDS: each frame goes to a running segmentation node, its mask comes back.

    The node runs as deployed, in its own process (`ros2 run bevanet_ros segmentation_node
    --ros-args -r image:=/camera/image_raw`), so the latency measured here is publish -> node ->
    mask received, transport included. Frames are sent in lockstep (the next one after the mask
    of the previous one, or after `timeout_s`: then the frame counts as dropped). `local`
    supplies the class names and colours for the report, the colour masks and the overlays.
    `child`: the node's process when this tool spawned it; its death ends the wait for the node
    at once (ChildProcessError) instead of after `discovery_s`.
    """

    def __init__(
        self,
        input_topic: str,
        mask_topic: str,
        local,
        timeout_s: float = 5.0,
        discovery_s: float = 15.0,
        child=None,
    ):
        self._rclpy = rclpy
        self.local = local
        self.class_names = local.class_names
        self.num_classes = local.num_classes
        self.timeout_s = float(timeout_s)
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
        self.pipeline: dict | None = None
        self.diag_sub = self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._masks: dict = {}
        deadline = time.monotonic() + discovery_s
        while time.monotonic() < deadline:
            if self.pub.get_subscription_count() > 0 and self.node.count_publishers(mask_topic) > 0:
                break
            gone = exited(child)  # a spawned node that died at once is not waited for
            if gone:
                self.shutdown()
                raise ChildProcessError(f"the segmentation node (pid {child.pid}) {gone} before it came up")
            rclpy.spin_once(self.node, timeout_sec=0.05)
        else:
            self.shutdown()
            raise TimeoutError(
                f"no segmentation node found within {discovery_s:.0f} s: nothing subscribes {input_topic} "
                f"and publishes {mask_topic}. Start one, e.g. `ros2 run bevanet_ros segmentation_node "
                f"--ros-args -r image:={input_topic}`, or set --node-input/--node-mask"
            )

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            found = pipeline_from_values((v.key, v.value) for v in status.values)
            if found is not None:
                self.pipeline = found

    def _on_mask(self, msg) -> None:
        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width]
        self._masks[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = rows.copy()

    def process(self, rgb, header):
        msg = array_to_imgmsg(rgb, "rgb8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
        msg.header.frame_id = str(header.frame_id)
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        t0 = time.perf_counter()
        self.pub.publish(msg)
        while key not in self._masks and time.perf_counter() - t0 < self.timeout_s:
            self._rclpy.spin_once(self.node, timeout_sec=0.002)
        latency = (time.perf_counter() - t0) * 1e3
        mask = self._masks.pop(key, None)
        self._masks.clear()  # late masks of dropped frames must not pile up
        return mask, latency, {}

    def colorize(self, mask):
        return self.local.colorize(mask)

    def overlay(self, rgb, mask, alpha):
        return self.local.overlay(rgb, mask, alpha)

    def shutdown(self) -> None:
        if self.node is not None and self.pipeline is None:
            # a run shorter than the node's diagnostics period: wait a little for its report
            deadline = time.monotonic() + PIPELINE_WAIT_S
            while self.pipeline is None and time.monotonic() < deadline:
                self._rclpy.spin_once(self.node, timeout_sec=0.05)
        if self.node is not None:
            self.node.destroy_node()
            self.node = None
        if self._owns_context and self._rclpy.ok():
            self._rclpy.shutdown()
