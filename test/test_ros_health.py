"""Camera and model health through the node over real DDS, with the shipped (calibrated) model:
black, saturated, noise and frozen frames turn the camera's /diagnostics status WARN with the
right reason, normal CamVid frames turn it OK again, and a drive of 100 normal frames raises no
alarm."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from test_ros_support import Probe, image_msg, params, ros_context, spinning, wait_for_subscribers  # noqa: E402

from bevanet_core.checkpoint import DEFAULT_WEIGHTS  # noqa: E402
from bevanet_core.data.datasets import build_dataset  # noqa: E402
from bevanet_ros.segmentation_node import SegmentationNode  # noqa: E402

__all__ = ["ros_context"]


@pytest.fixture(scope="module")
def drive(shared_data):
    """The 101 frames of CamVid drive 0006R0 in time order (RGB 480x360)."""
    ds = build_dataset("camvid", shared_data / "camvid", None, "heldout")
    order = sorted(range(len(ds)), key=lambda i: ds.pairs[i][0].name)
    return [ds[i][0] for i in order]


class Camera:
    """Publishes frames one at a time and waits for each one's mask (so every frame is judged)."""

    def __init__(self, node, probe):
        self.node = node
        self.masks = probe.subscribe("/segmentation/mask", depth=50)
        self.pub = probe.publisher("image", reliable=True)
        wait_for_subscribers(self.pub)
        self.stamp = 1_000.0
        self.count = 0

    def send(self, frame: np.ndarray, period_s: float = 1 / 30) -> DiagnosticStatus:
        self.stamp += period_s
        self.count += 1
        frame_id = f"frame{self.count}"
        msg = image_msg(frame, "rgb8", int(self.stamp * 1e9), frame_id)
        monitor = self.node.pipeline.health.monitors[0]
        seen = monitor.frames
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            self.pub.publish(msg)
            if self.masks.wait(lambda items: any(m.header.frame_id == frame_id for m in items), 5.0):
                break
        else:
            raise AssertionError(f"no mask for {frame_id}")
        while monitor.frames == seen and time.monotonic() < deadline:  # updated right after the mask goes out
            time.sleep(0.005)
        (status,) = self.node.pipeline.health_statuses()
        return status


@pytest.fixture(scope="module")
def camera(ros_context):
    node = SegmentationNode(
        context=ros_context,
        parameter_overrides=params(
            DEFAULT_WEIGHTS, backend="torch", batch_window_ms=0.0, diagnostics_period_s=0.2, health_frozen_frames=6
        ),
    )
    probe = Probe(ros_context, "probe_health")
    diag = probe.subscribe("/diagnostics", DiagnosticArray, depth=100)
    with spinning(ros_context, node, probe.node):
        cam = Camera(node, probe)
        cam.diagnostics = diag
        yield cam
    probe.destroy()
    node.destroy_node()


@pytest.mark.parametrize("fault", ["black", "saturated", "noise", "frozen"])
def test_fault_warns_with_its_reason_and_normal_frames_clear_it(camera, drive, fault):
    rng = np.random.default_rng(0)
    start = {"black": 0, "saturated": 10, "noise": 20, "frozen": 30}[fault]
    assert camera.send(drive[start]).level == DiagnosticStatus.OK
    make = {
        "black": lambda i: np.zeros_like(drive[0]),
        "saturated": lambda i: np.full_like(drive[0], 255),
        "noise": lambda i: rng.integers(0, 256, drive[0].shape, dtype=np.uint8),
        "frozen": lambda i: drive[start],
    }[fault]
    warned = None
    for i in range(8 if fault == "frozen" else 2):
        status = camera.send(make(i))
        if status.level == DiagnosticStatus.WARN:
            warned = status
    assert warned is not None, f"no WARN for {fault} frames"
    expected = {"black": "black frames", "saturated": "saturated frames", "noise": "heavy noise", "frozen": "frozen"}
    assert warned.message.startswith(expected[fault]), warned.message
    keys = {kv.key for kv in warned.values}
    assert {"luma_p99", "saturated_share", "noise_sigma", "frozen_frames"} <= keys
    assert warned.name.endswith("camera cam0") and warned.hardware_id.endswith("image")
    for i in range(1, 4):
        status = camera.send(drive[start + i])
    assert status.level == DiagnosticStatus.OK, status.message
    # and the same statuses went out on /diagnostics
    ok = camera.diagnostics.wait(
        lambda items: any(
            s.level == DiagnosticStatus.WARN and s.message.startswith(expected[fault]) for m in items for s in m.status
        ),
        10.0,
    )
    assert ok, f"no WARN for {fault} on /diagnostics"


def test_a_normal_drive_stays_ok_throughout(camera, drive):
    camera.send(drive[0], period_s=1.0)  # after the fault tests: the first frame of the drive
    levels = [camera.send(frame, period_s=1.0) for frame in drive[1:101]]
    alarms = [(i, s.message) for i, s in enumerate(levels) if s.level != DiagnosticStatus.OK]
    assert len(levels) == 100 and not alarms, alarms[:3]


def test_a_report_becomes_a_diagnostic_status_named_after_the_node():
    from bevanet_core.serving.diagnostics import StatusReport
    from bevanet_ros.diagnostics import to_status

    report = StatusReport("WARN", "black frames", {"luma_p99": "3"}, "camera cam0", "/camera/image_raw")
    for updater in (False, True):
        status = to_status(report, "/segmentation", updater=updater)
        assert status.level == DiagnosticStatus.WARN and status.message == "black frames"
        assert status.name == "/segmentation: camera cam0" and status.hardware_id == "/camera/image_raw"
        assert [(kv.key, kv.value) for kv in status.values] == [("luma_p99", "3")]
