"""What the node reports on /diagnostics, without ROS: the node's own status from the stream's
statistics (`serving.diagnostics`), and the camera health's reports and log lines
(`serving.camera_health`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bevanet_core.data.classes import CAMVID_CLASSES
from bevanet_core.data.datasets import build_dataset
from bevanet_core.serving.camera_health import CameraHealth
from bevanet_core.serving.diagnostics import NodeStatus
from bevanet_core.serving.params import NodeSettings


@pytest.fixture(scope="module")
def drive(shared_data):
    """The first 12 frames of CamVid drive 0006R0 in time order (RGB 480x360)."""
    ds = build_dataset("camvid", shared_data / "camvid", None, "heldout")
    order = sorted(range(len(ds)), key=lambda i: ds.pairs[i][0].name)[:12]
    return [ds[i][0] for i in order]


class _Logger:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(("warning", text))

    def info(self, text):
        self.lines.append(("info", text))


def test_logs_say_it_once_and_the_recovery_once(drive):
    log = _Logger()
    health = CameraHealth(NodeSettings.from_values({"error_log_period_s": 3600.0}), list(CAMVID_CLASSES), log)
    black = np.zeros_like(drive[0])

    def frame(i, rgb):
        header = SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=i * 33_000_000))  # 30 Hz
        health.update(
            0, SimpleNamespace(header=header, encoding="rgb8"), rgb, SimpleNamespace(confidence=None, mask=None)
        )

    frame(0, drive[0])
    for i in range(1, 6):
        frame(i, black)
    for i in range(6, 9):
        frame(i, drive[i])
    for i in range(9, 12):  # black again within the log period: counted, not logged
        frame(i, black)
    assert [kind for kind, _ in log.lines] == ["warning", "info"], log.lines
    assert "black frames" in log.lines[0][1] and "back to normal (black gone)" in log.lines[1][1]
    (report,) = health.reports()
    assert report.level == "WARN" and "black" in report.message
    assert report.name == "camera cam0" and report.hardware_id == "image"
    assert report.values and all(isinstance(v, str) for v in report.values.values())

    health.apply(NodeSettings.from_values({"health_checks": False}))
    (report,) = health.reports()
    assert (report.level, report.message, report.values) == ("OK", "health checks off (health_checks:=false)", {})


def test_node_status_counts_errors_since_the_last_report():
    settings = NodeSettings.from_values({"device": "cpu"})
    status = NodeStatus()
    assert status.report(None, None, {}, active=False).hardware_id == "unconfigured"
    first = status.report(settings, "onnxruntime", {"frames_received": 0}, active=True)
    assert (first.level, first.message, first.hardware_id) == (
        "WARN",
        "no camera frames received yet",
        "onnxruntime:cpu",
    )
    snap = {
        "frames_received": 10,
        "frames_bad": 2,
        "inference_errors": 1,
        "frames_lost_in_transport": 0,
        "last_error": "bad encoding 'yuv9'",
        "output_rate_hz": 9.5,
        "inference_ms_mean": 20.25,
        "end_to_end_ms_mean": 31.0,
    }
    bad = status.report(settings, None, snap, active=True)
    assert bad.level == "ERROR" and bad.message.startswith("3 bad frames") and "yuv9" in bad.message
    assert bad.hardware_id == f"{settings.backend}:cpu"  # before 'auto' chose, the parameter
    assert bad.values["output_rate_hz"] == "9.500" and bad.values["frames_bad"] == "2"
    ok = status.report(settings, "torch", snap, active=True)  # the same 3 errors: reported already
    assert (ok.level, ok.message) == ("OK", "9.5 Hz out, inference 20.2 ms, end-to-end 31.0 ms")
    assert status.report(settings, "torch", {**snap, "frames_bad": 3}, active=False).message == "inactive"
