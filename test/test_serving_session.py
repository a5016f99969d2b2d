"""A node's session without ROS (`bevanet_core.serving.session.NodeSession`), with the shipped
model: load, a frame through the worker to the outputs the transport publishes (those nobody
listens to left out), camera health and the node's status figures, dynamic settings, unload."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from bevanet_core.checkpoint import DEFAULT_WEIGHTS
from bevanet_core.serving.params import NodeSettings
from bevanet_core.serving.session import NodeSession

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason=f"no shipped model at {DEFAULT_WEIGHTS}"),
]


class _Logger:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda text: self.lines.append((level, text))


class RecordingSession(NodeSession):
    """The transport of a test: records what would be published; `listening`: the outputs with
    a subscriber."""

    def __init__(self, listening=()):
        super().__init__(_Logger())
        self.listening = set(listening)
        self.published = []
        self.done = threading.Event()

    def publish_images(self, camera, images, header):
        self.published.append((camera, {name: (image.shape, enc) for name, (image, enc) in images.items()}, header))
        self.done.set()

    def subscribed(self, camera, output):
        return output in self.listening


def image_msg(rgb: np.ndarray, sec: int = 1):
    """An object with sensor_msgs/Image's fields."""
    h, w = rgb.shape[:2]
    stamp = SimpleNamespace(sec=sec, nanosec=0)
    return SimpleNamespace(
        encoding="rgb8",
        height=h,
        width=w,
        step=3 * w,
        data=rgb.tobytes(),
        is_bigendian=0,
        header=SimpleNamespace(stamp=stamp, frame_id="camera"),
    )


def test_a_frame_goes_through_the_session_to_the_outputs_someone_listens_to():
    settings = NodeSettings.from_values(
        {"backend": "torch", "device": "cpu", "input_width": 64, "input_height": 48, "warmup": False}
    )
    session = RecordingSession(listening={"overlay"})
    assert session.node_report().hardware_id == "unconfigured" and session.camera_reports() == []
    session.load_model(settings)
    assert any("torch" in text for _, text in session.logger.lines), session.logger.lines
    session.start("session-test")
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)
    msg = image_msg(rgb)
    try:
        session.stream.put(0, msg)
        assert session.done.wait(60), "no result within 60 s"
    finally:
        session.stop()
    ((camera, images, header),) = session.published
    assert camera == 0 and header is msg.header
    # the mask always, the overlay (someone listens), not the colour mask (nobody does)
    assert images == {"mask": ((60, 80), "mono8"), "overlay": ((60, 80, 3), "rgb8")}
    (report,) = session.camera_reports()
    assert report.name == "camera cam0" and report.hardware_id == "image" and report.level in ("OK", "WARN")
    node = session.node_report()
    assert node.hardware_id == "torch:cpu" and node.message == "inactive"  # stopped
    assert node.values["frames_received"] == "1"

    session.update_settings(settings.with_updates({"health_checks": False, "batch_window_ms": 20.0}))
    assert session.stream.batch_window_ms == 20.0
    assert session.camera_reports()[0].message == "health checks off (health_checks:=false)"
    session.unload_model()
    assert session.segmenter is None


def test_the_transport_is_the_subclass_s_job():
    session = NodeSession()
    with pytest.raises(NotImplementedError):
        session.publish_images(0, {}, None)
    with pytest.raises(NotImplementedError):
        session.subscribed(0, "overlay")
