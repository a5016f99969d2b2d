"""`--help` on the node executables: usage and every parameter, exit 0, quickly, and no node."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bevanet_ros.params import PARAMS

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python wheels) is not installed")


@pytest.mark.parametrize("module", ["bevanet_ros.segmentation_node", "bevanet_ros.lifecycle_segmentation_node"])
def test_help_prints_usage_and_parameters_without_starting_a_node(module, tmp_path):
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path / "ros_log"))
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert elapsed < 5.0, f"--help took {elapsed:.1f} s"
    out = done.stdout
    assert out.startswith(f"usage: python -m {module} ")
    for spec in PARAMS:
        assert f"\n  {spec.name}  {spec.type_name}  default: " in out, spec.name
        assert spec.description.split(" Read-only")[0][:40] in out.replace("\n      ", " ")
    # nothing started: no rclpy log line, no ROS log folder
    assert "[INFO]" not in out + done.stderr and not (tmp_path / "ros_log").exists()
