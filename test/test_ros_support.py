"""Shared helpers for the ROS tests (real rclpy + DDS; nothing mocked).

Every test process talks on its own random ROS_DOMAIN_ID (1..200, localhost only), so ROS tests
of several people on one machine never see each other. Import it as
`from test_ros_support import ...` after putting this folder on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python wheels) is not installed")
pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs is not installed")

from frames import rgb_to_raw  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

# one domain per test process; SystemRandom because the conftest reseeds `random` per test
DOMAIN_ID = int(os.environ.get("BEVANET_TEST_DOMAIN_ID", random.SystemRandom().randint(1, 200)))
os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)  # for subprocesses (python -m ... tests)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

NET_SIZE = (64, 64)  # (W, H): tiny network input, fast on 2 shared cores
WAIT_S = 60.0  # generous: the CI box is shared with a training run


def make_context() -> Any:
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    return ctx


def shutdown_context(ctx: Any) -> None:
    """Shuts a context down after collecting the garbage: a node or executor left unreferenced by a
    test is then finalised while its context is alive, not at some later collection, in whatever
    test runs then, against a context that is gone."""
    import gc

    gc.collect()
    rclpy.shutdown(context=ctx)
    gc.collect()


@pytest.fixture(scope="module")
def ros_context() -> Iterator[Any]:
    """A private rclpy context for one test module."""
    ctx = make_context()
    yield ctx
    shutdown_context(ctx)


def save_seeded_weights(path: Path, seed: int = 0, num_classes: int = 11) -> Path:
    """A seeded random BEVANet-S (CamVid classes) saved with its ModelInfo at a tiny input size.

    Conditioned (variance-preserving weights, non-trivial norm statistics) so that its masks
    vary over a frame: an untrained init paints every pixel one class, and a test comparing
    masks would then pass whatever the node did to the frame."""
    import torch

    from bevanet_core.checkpoint import ModelInfo, save_weights
    from bevanet_core.deploy import condition_for_parity
    from bevanet_core.models import build_model

    torch.manual_seed(seed)
    model = condition_for_parity(build_model("bevanet_s", num_classes=num_classes).eval())
    info = ModelInfo.default("bevanet_s", num_classes, input_size=NET_SIZE)
    save_weights(model, path, info)
    return path


@pytest.fixture(scope="session")
def seeded_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_seeded_weights(tmp_path_factory.mktemp("weights") / "bevanet_s_seed0.safetensors")


def params(weights: Path, **values: Any) -> list[Parameter]:
    """parameter_overrides for a test node."""
    values.setdefault("num_threads", 1)  # 2 threads on 2 shared, busy cores are many times slower
    out = [Parameter("weights", value=str(weights))]
    out += [Parameter(k, value=v) for k, v in values.items()]
    return out


def qos(reliable: bool, depth: int = 10, latched: bool = False) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def camera_frame(width: int = 80, height: int = 60, seed: int = 0) -> np.ndarray:
    """A seeded RGB frame (smooth gradient + noise so the model sees some structure)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            x * 255 // max(width - 1, 1),
            y * 255 // max(height - 1, 1),
            (x + y) * 127 // max(width + height - 2, 1),
        ],
        -1,
    )
    noise = rng.integers(0, 40, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def image_msg(rgb: np.ndarray, encoding: str = "rgb8", stamp_ns: int = 0, frame_id: str = "camera") -> Image:
    msg = Image()
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.data, msg.step = rgb_to_raw(rgb, encoding)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def compressed_msg(rgb: np.ndarray, fmt: str = "jpeg", stamp_ns: int = 0, frame_id: str = "camera") -> CompressedImage:
    import cv2

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage()
    msg.format = fmt
    msg.data = buf.tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class Collector:
    """Thread-safe list of received messages with a wait-for-condition."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.times: list[float] = []  # time.monotonic() at arrival
        self.wall: list[float] = []  # time.time() at arrival (to compare with header stamps)
        self._cond = threading.Condition()

    def __call__(self, msg: Any) -> None:
        with self._cond:
            self.items.append(msg)
            self.times.append(time.monotonic())
            self.wall.append(time.time())
            self._cond.notify_all()

    def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def wait_count(self, n: int, timeout: float = WAIT_S) -> bool:
        return self.wait(lambda items: len(items) >= n, timeout)


class Probe:
    """A plain test node that publishes camera frames and collects the node's outputs."""

    def __init__(self, ctx: Any, name: str = "probe") -> None:
        self.node = Node(name, context=ctx)
        self.collectors: dict[str, Collector] = {}

    def subscribe(
        self,
        topic: str,
        msg_type: Any = Image,
        reliable: bool = True,
        latched: bool = False,
        depth: int = 10,
    ) -> Collector:
        col = Collector()
        self.node.create_subscription(msg_type, topic, col, qos(reliable, depth, latched))
        self.collectors[topic] = col
        return col

    def publisher(self, topic: str, msg_type: Any = Image, reliable: bool = True, depth: int = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos(reliable, depth))

    def destroy(self) -> None:
        self.node.destroy_node()


@contextlib.contextmanager
def spinning(ctx: Any, *nodes: Any, threads: int = 2) -> Iterator[MultiThreadedExecutor]:
    """Spins `nodes` in one executor on a background thread for the duration of the block."""
    executor = MultiThreadedExecutor(num_threads=threads, context=ctx)
    for n in nodes:
        executor.add_node(n)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set() and ctx.ok():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        stop.set()
        thread.join(10.0)
        for n in nodes:
            executor.remove_node(n)
        executor.shutdown(timeout_sec=5.0)


def wait_for_subscribers(publisher: Any, count: int = 1, timeout: float = 10.0) -> None:
    """DDS discovery: wait until `publisher` sees `count` matching subscriptions."""
    deadline = time.monotonic() + timeout
    while publisher.get_subscription_count() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no subscriber matched {publisher.topic_name} within {timeout} s")
        time.sleep(0.02)


def publish_until(
    publisher: Any,
    make_msg: Callable[[int], Any],
    collector: Collector,
    n: int = 1,
    period: float = 0.3,
    timeout: float = WAIT_S,
) -> list[Any]:
    """Publishes make_msg(i) every `period` until `collector` holds `n` messages whose frame_id
    is the published one (late outputs of earlier tests do not count); returns the sent."""
    sent: list[Any] = []
    frame_id = make_msg(0).header.frame_id

    def done(items: list[Any]) -> bool:
        return sum(m.header.frame_id == frame_id for m in items) >= n

    deadline = time.monotonic() + timeout
    i = 0
    while not done(collector.items) and time.monotonic() < deadline:
        msg = make_msg(i)
        publisher.publish(msg)
        sent.append(msg)
        i += 1
        collector.wait(done, timeout=period)
    return sent


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")
