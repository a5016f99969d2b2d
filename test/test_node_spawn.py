"""bevanet-demo --spawn-node: the child node gets its parameters through a params file, so a
weights path holding '#' or ': ' arrives whole, and a child that dies at once is noticed at
once instead of after the start timeout."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bevanet_core.cli.node_process import exited, spawn_node

HOSTILE = "weights #1: best, 'final' \"v2\".safetensors"


def _args(weights: Path) -> argparse.Namespace:
    return argparse.Namespace(
        backend="onnxruntime",
        device="cpu",
        precision="fp32",
        resize="letterbox",
        weights=str(weights),
        input_size="64x48",
        threads=1,
        node_input="/camera/image_raw",
    )


def test_parameters_reach_the_child_whole_through_a_params_file(tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not installed")
    from rclpy.context import Context

    weights = tmp_path / "a: b # c" / HOSTILE
    weights.parent.mkdir()
    weights.write_bytes(b"")
    echo = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    child = spawn_node(echo, _args(weights), tmp_path / "node.log")
    assert child.wait(30) == 0
    argv = json.loads((tmp_path / "node.log").read_text())
    assert argv[:3] == ["--ros-args", "-r", "image:=/camera/image_raw"] and "-p" not in argv
    # read by rcl's own parser, as the node reads it
    context = Context()
    rclpy.init(args=["node", *argv], context=context)
    try:
        node = rclpy.create_node(
            "segmentation_node", context=context, automatically_declare_parameters_from_overrides=True
        )
        values = {name: node.get_parameter(name).value for name in ("weights", "input_width", "num_threads", "resize")}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert values == {"weights": str(weights.resolve()), "input_width": 64, "num_threads": 1, "resize": "letterbox"}


def test_exited_says_how_a_child_ended():
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert exited(running) is None and exited(None) is None
    finally:
        running.kill()
        running.wait()
    assert exited(running) == "was killed by signal 9"
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    failed.wait()
    assert exited(failed) == "exited with code 3"


def test_the_client_notices_a_spawned_node_that_died_at_once(monkeypatch):
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not installed")
    from bevanet_ros.bag_client import NodeClient

    monkeypatch.setenv("ROS_DOMAIN_ID", "173")
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    local = SimpleNamespace(class_names=["a"], num_classes=1)
    t0 = time.monotonic()
    with pytest.raises(ChildProcessError, match=f"segmentation node \\(pid {child.pid}\\) exited with code 3"):
        NodeClient("/spawn_test/image", "/spawn_test/mask", local, discovery_s=120.0, child=child)
    assert time.monotonic() - t0 < 20.0
