"""studies/sky_check.py runs each model through bevanet-predict, at the input size asked for."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _footage(tmp_path: Path):
    rng = np.random.default_rng(0)
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for _ in range(3):
        writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(2):
        cv2.imwrite(str(grey / f"{i:06d}.png"), rng.integers(0, 255, (40, 120), dtype=np.uint8))
    return video, grey


def test_every_frame_is_counted_at_the_input_size_asked_for(tmp_path):
    video, grey = _footage(tmp_path)
    out = tmp_path / "sky.json"
    proc = subprocess.run(
        [
            sys.executable,
            "studies/sky_check.py",
            "--video",
            str(video),
            "--kitti",
            str(grey),
            "--input-size",
            "64x48",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())
    assert row["input_size"] == "64x48"
    assert row["video_frames"] == 3 and row["kitti_frames"] == 2
    assert 0.0 <= row["top_rows_sky_pct"] <= 100.0


def test_an_input_size_the_network_cannot_take_is_refused_by_name(tmp_path):
    video, grey = _footage(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "studies/sky_check.py",
            "--video",
            str(video),
            "--kitti",
            str(grey),
            "--input-size",
            "65x48",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "input_size 65x48 must have width and height divisible by 8" in proc.stderr
