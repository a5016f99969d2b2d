"""The frame processor of `--through-node`, without ROS: frames go to a running segmentation node
one at a time, each mask comes back keyed by its frame's stamp. The DDS side (the publisher, the
subscription, spinning) is `bevanet_ros.bag_client.NodeClient`, which derives from
`LockstepClient`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .node_process import exited

PIPELINE_WAIT_S = 3.0  # longer than the node's default diagnostics period


class LockstepClient:
    """FrameProcessor over a transport: each frame is sent, then the transport is spun until the
    mask with the frame's stamp is back, or `timeout_s` passed (the frame counts as dropped), so
    the latency measured is send -> node -> mask received. `local` supplies the class names and
    colours for the report, the colour masks and the overlays.

    Subclasses supply `message(rgb, header)` -> (message, stamp in ns), `send(message)`,
    `spin(timeout_s)` and `shutdown()`, and pass each mask that arrives to `received`."""

    def __init__(self, local: Any, timeout_s: float = 5.0) -> None:
        self.local = local
        self.class_names = local.class_names
        self.num_classes = local.num_classes
        self.timeout_s = float(timeout_s)
        self._masks: dict[int, Any] = {}
        self.pipeline: dict | None = None  # what the node runs, from its own report (its /diagnostics)

    def message(self, rgb: Any, header: Any) -> tuple[Any, int]:
        raise NotImplementedError

    def send(self, message: Any) -> None:
        raise NotImplementedError

    def spin(self, timeout_s: float) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def wait_for_pipeline(self, wait_s: float = PIPELINE_WAIT_S) -> None:
        """Spins until the node has named its pipeline, for at most `wait_s`: a run shorter than the
        node's diagnostics period may end before its first report."""
        deadline = time.monotonic() + wait_s
        while self.pipeline is None and time.monotonic() < deadline:
            self.spin(0.05)

    def received(self, stamp_ns: int, mask: Any) -> None:
        self._masks[stamp_ns] = mask

    def wait_for_node(
        self, ready: Callable[[], bool], input_topic: str, mask_topic: str, discovery_s: float, child: Any = None
    ) -> None:
        """Spins until `ready()` (the node subscribes `input_topic` and publishes `mask_topic`).
        `child`: the node's process when this tool spawned it; its death ends the wait at once
        (ChildProcessError) instead of after `discovery_s` (TimeoutError). Shuts down on either."""
        deadline = time.monotonic() + discovery_s
        while time.monotonic() < deadline:
            if ready():
                return
            gone = exited(child)  # a spawned node that died at once is not waited for
            if gone:
                self.shutdown()
                raise ChildProcessError(f"the segmentation node (pid {child.pid}) {gone} before it came up")
            self.spin(0.05)
        self.shutdown()
        raise TimeoutError(
            f"no segmentation node found within {discovery_s:.0f} s: nothing subscribes {input_topic} "
            f"and publishes {mask_topic}. Start one, e.g. `ros2 run bevanet_ros segmentation_node "
            f"--ros-args -r image:={input_topic}`, or set --node-input/--node-mask"
        )

    def process(self, rgb: Any, header: Any) -> tuple[Any, float, dict]:
        message, key = self.message(rgb, header)
        t0 = time.perf_counter()
        self.send(message)
        while key not in self._masks and time.perf_counter() - t0 < self.timeout_s:
            self.spin(0.002)
        latency = (time.perf_counter() - t0) * 1e3
        mask = self._masks.pop(key, None)
        self._masks.clear()  # late masks of dropped frames must not pile up
        return mask, latency, {}

    def colorize(self, mask: Any) -> Any:
        return self.local.colorize(mask)

    def overlay(self, rgb: Any, mask: Any, alpha: float) -> Any:
        return self.local.overlay(rgb, mask, alpha)
