"""The per-camera health monitor without ROS: each camera fault and model doubt goes WARN with its
reason and figures, a camera that is fine again goes back to OK, and normal footage raises no
alarm."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bevanet_core.data.classes import CAMVID_CLASSES
from bevanet_core.data.datasets import build_dataset
from bevanet_core.serving.health import OK, WARN, HealthMonitor, HealthThresholds, analysis_grey, image_figures


@pytest.fixture(scope="module")
def frames(shared_data):
    """40 consecutive frames of one CamVid drive (0006R0), RGB 480x360."""
    ds = build_dataset("camvid", shared_data / "camvid", None, "heldout")
    return [ds[i][0] for i in range(40)]


def feed(monitor, frames, start_s=0.0, period_s=1 / 30, **kw):
    for i, frame in enumerate(frames):
        monitor.update(frame, start_s + i * period_s, "rgb8", **kw)
    return monitor.status()


def test_normal_frames_are_ok_and_carry_their_figures(frames):
    m = HealthMonitor("front", class_names=CAMVID_CLASSES)
    levels = []
    for i, frame in enumerate(frames):
        m.update(frame, i / 30, "rgb8")
        levels.append(m.status()[0])
    assert levels == [OK] * len(frames)
    level, message, values = m.status()
    assert message == "camera and model look normal"
    for key in ("luma_p99", "saturated_share", "noise_sigma", "sharpness", "frame_difference", "resolution"):
        assert key in values, key
    assert values["resolution"] == "480x360"


@pytest.mark.parametrize(
    "fault, reason",
    [
        (lambda f, rng: np.zeros_like(f), "black"),
        (lambda f, rng: np.full_like(f, 255), "saturated"),
        (lambda f, rng: rng.integers(0, 256, f.shape, dtype=np.uint8), "noise"),
        (lambda f, rng: cv2.GaussianBlur(f, (0, 0), 8), "blur"),
    ],
    ids=["black", "saturated", "noise", "blur"],
)
def test_each_camera_fault_warns_with_its_reason_and_recovers(frames, fault, reason):
    rng = np.random.default_rng(0)
    m = HealthMonitor("front", class_names=CAMVID_CLASSES)
    assert feed(m, frames[:5])[0] == OK
    for i in range(3):
        m.update(fault(frames[5 + i], rng), 1.0 + i / 30, "rgb8")
        level, message, values = m.status()
        assert level == WARN and reason in m.reasons, (message, m.reasons)
    assert message.startswith(
        {"black": "black", "saturated": "saturated", "noise": "heavy noise", "blur": "blurred"}[reason]
    )
    assert feed(m, frames[10:14], start_s=2.0)[0] == OK


def test_frozen_by_frame_count_and_by_seconds(frames):
    t = HealthThresholds(frozen_frames=10, frozen_s=2.0)
    m = HealthMonitor("front", t, CAMVID_CLASSES)
    for i in range(10):  # the same frame, 30 Hz: frames 2..10 are near-identical to the one before
        m.update(frames[0], i / 30, "rgb8")
    assert m.status()[0] == OK
    m.update(frames[0], 10 / 30, "rgb8")
    level, message, _ = m.status()
    assert level == WARN and m.reasons == ["frozen"] and "identical frames in a row" in message
    m.update(frames[1], 11 / 30, "rgb8")
    assert m.status()[0] == OK
    # a slow camera: 3 identical frames over 3 seconds
    m = HealthMonitor("slow", t, CAMVID_CLASSES)
    for i in range(4):
        m.update(frames[0], float(i), "rgb8")
    assert m.reasons == ["frozen"]
    # sensor noise of a live but still camera is not a frozen one
    m = HealthMonitor("still", t, CAMVID_CLASSES)
    rng = np.random.default_rng(1)
    for i in range(20):
        noisy = np.clip(frames[0] + rng.normal(0, 2.0, frames[0].shape), 0, 255).astype(np.uint8)
        m.update(noisy, i / 30, "rgb8")
    assert m.status()[0] == OK, m.status()[1]


def test_format_change_and_time_going_back_are_held_then_cleared(frames):
    t = HealthThresholds(event_hold_frames=3)
    m = HealthMonitor("front", t, CAMVID_CLASSES)
    feed(m, frames[:3])
    small = cv2.resize(frames[3], (320, 240))
    m.update(small, 0.2, "rgb8")
    level, message, values = m.status()
    assert level == WARN and m.reasons == ["format change"] and "480x360 -> 320x240" in message
    m.update(cv2.resize(frames[4], (320, 240)), 0.25, "bgr8")
    assert "encoding rgb8 -> bgr8" in m.status()[1]
    m.update(cv2.resize(frames[5], (320, 240)), 0.1, "bgr8")
    assert set(m.reasons) == {"format change", "time backwards"}
    assert "timestamp went back 0.150 s" in m.status()[1]
    for i in range(4):
        m.update(cv2.resize(frames[6 + i], (320, 240)), 0.3 + i / 30, "bgr8")
    assert m.status()[0] == OK


def test_model_doubt_low_confidence_no_road_and_unusual_scene(frames):
    road = CAMVID_CLASSES.index("Road")
    prior = [0.1] * 11
    prior[road] = 0.0
    prior = [p / sum(prior) for p in prior]
    t = HealthThresholds(window=3, class_prior=prior, max_class_distance=0.5, min_road_share=0.05)
    m = HealthMonitor("front", t, CAMVID_CLASSES)
    h, w = frames[0].shape[:2]
    sure = np.full((h, w), 240, np.uint8)
    unsure = np.full((h, w), 90, np.uint8)
    mixed = (np.arange(h * w).reshape(h, w) % 11).astype(np.uint8)
    mixed[: h // 4] = road  # a quarter road, the rest evenly spread
    for i in range(3):
        m.update(frames[i], i / 30, "rgb8", confidence=sure, mask=mixed)
    assert m.status()[0] == OK, m.status()[1]
    for i in range(3):
        m.update(frames[3 + i], (3 + i) / 30, "rgb8", confidence=unsure, mask=mixed)
    level, message, values = m.status()
    assert level == WARN and "low confidence" in m.reasons and values["mean_confidence"] < 0.4
    sky = np.zeros((h, w), np.uint8)  # all sky: no road, far from the prior
    for i in range(3):
        m.update(frames[6 + i], (6 + i) / 30, "rgb8", confidence=sure, mask=sky)
    assert "unusual scene" in m.reasons
    m.t.max_class_distance = 1.0
    m.update(frames[9], 10 / 30, "rgb8", confidence=sure, mask=sky)
    assert m.reasons == ["no road"] and "no road" in m.status()[1]
    for i in range(3):
        m.update(frames[10 + i], (11 + i) / 30, "rgb8", confidence=sure, mask=mixed)
    assert m.status()[0] == OK


def test_model_figures_are_not_judged_on_a_broken_camera(frames):
    m = HealthMonitor("front", HealthThresholds(window=1), CAMVID_CLASSES)
    black = np.zeros_like(frames[0])
    m.update(
        black, 0.0, "rgb8", confidence=np.zeros(black.shape[:2], np.uint8), mask=np.zeros(black.shape[:2], np.uint8)
    )
    assert m.reasons == ["black"]


def test_figures_do_not_depend_on_resolution(frames):
    a = image_figures(analysis_grey(frames[0]))
    b = image_figures(analysis_grey(cv2.resize(frames[0], (960, 720), interpolation=cv2.INTER_NEAREST)))
    assert a["luma_p99"] == pytest.approx(b["luma_p99"], abs=2)
    assert a["noise_sigma"] == pytest.approx(b["noise_sigma"], rel=0.35)


def test_bad_thresholds_are_named():
    with pytest.raises(ValueError, match="saturated_share"):
        HealthMonitor("x", HealthThresholds(saturated_share=2.0))
    with pytest.raises(ValueError, match="frozen_frames"):
        HealthMonitor("x", HealthThresholds(frozen_frames=0))
