"""scripts/demo.sh says which path it takes and why, and arguments do not change the path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HAS_RCLPY = importlib.util.find_spec("rclpy") is not None


def demo_sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/demo.sh", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_in_process_when_asked(tmp_path):
    done = demo_sh("--in-process", "--max-frames", "2", "--no-video", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[demo] path: in-process runtime, as --in-process asks" in done.stderr
    assert json.loads((tmp_path / "report.json").read_text())["mode"] == "in-process runtime"


@pytest.mark.skipif(not HAS_RCLPY, reason="rclpy is not installed: demo.sh takes the in-process path")
def test_arguments_keep_the_node_over_dds(tmp_path):
    done = demo_sh("--max-frames", "2", "--no-video", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    said = "[demo] path: the segmentation node over DDS (--spawn-node): rclpy imports"
    assert said in done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mode"] == "dds-node" and report["node_started_by_demo"] is True
