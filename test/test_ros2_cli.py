"""The README's commands typed into the real `ros2` command line, against a colcon install:
`ros2 run` with -p, `ros2 param dump/get/set` (with the effect of the set checked on the mask
topic), `ros2 topic hz` and `ros2 topic echo --once`, `ros2 lifecycle set` through configure,
activate, deactivate and shutdown, `ros2 component load/list/unload` against the package's
component container. One node process per journey; frames are published from this process.

`ros2` comes from a sourced ROS 2 or from scripts/bootstrap.sh with ../shared/ros-src (the venv's
bin); where it is absent every test here skips and says why. The launch files' journeys
(`ros2 launch`) are in test_launch_live.py.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros2_cli_support import (  # noqa: E402
    START_S,
    Process,
    colcon_build,
    install_env,
    pid_alive,
    ros2,
    ros2_executable,
    ros2_missing_reason,
)

if ros2_missing_reason():
    pytest.skip(ros2_missing_reason(), allow_module_level=True)

from test_ros_support import (  # noqa: E402
    DOMAIN_ID,
    Probe,
    camera_frame,
    image_msg,
    ros_context,
    seeded_weights,
    spinning,
)

from bevanet_core.serving.params import PARAMS  # noqa: E402

__all__ = ["ros_context", "seeded_weights"]
NO_DAEMON = ["--no-daemon"]  # no `ros2 daemon` outliving the test; discovery needs time then
SLOW = ["--no-daemon", "--spin-time", "3"]  # discovery on a busy machine


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return install_env(colcon_build(tmp_path_factory.mktemp("colcon_ws")), DOMAIN_ID)


def run(env: dict[str, str], log: Path, *args: str) -> Process:
    """`ros2 run bevanet_ros ...`, as typed."""
    return Process([ros2_executable(), "run", "bevanet_ros", *args], env, log)


@contextlib.contextmanager
def camera(probe: Probe, topic: str, hz: float = 5.0) -> Iterator[None]:
    """Publishes frames on `topic` at `hz` from a thread while the block runs."""
    pub = probe.publisher(topic)
    stop = threading.Event()
    frame = camera_frame(80, 60, seed=1)

    def feed() -> None:
        while not stop.is_set():
            pub.publish(image_msg(frame, "rgb8", stamp_ns=time.time_ns(), frame_id="journey"))
            stop.wait(1.0 / hz)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def component_list(env: dict[str, str], expect: str) -> str:
    """`ros2 component list` until it shows `expect` (discovery may miss the container once)."""
    for _ in range(3):
        listing = ok(ros2(env, "component", "list", *SLOW))
        if re.search(expect, listing):
            break
    return listing


def ok(done) -> str:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_ros2_run_param_topic_journey(env, seeded_weights, ros_context, tmp_path):
    node = run(
        env,
        tmp_path / "node.log",
        "segmentation_node",
        "--ros-args",
        "-r",
        "image:=/journey/image_raw",
        "-p",
        f"weights:={seeded_weights}",
        "-p",
        "backend:=torch",
        "-p",
        "num_threads:=1",
    )
    probe = Probe(ros_context, "journey_probe")
    try:
        node.wait_for(r"camera 'cam0': /journey/image_raw")
        # every declared parameter is there with its value, the empty list included
        dump = ok(ros2(env, "param", "dump", "/segmentation", *NO_DAEMON, "--timeout", "30"))
        for spec in PARAMS:
            assert re.search(rf"^    {spec.name}:", dump, re.M), f"{spec.name} missing from:\n{dump}"
        assert "    camera_names: []" in dump and f"    weights: {seeded_weights}" in dump, dump
        assert "String values are: []" in ok(ros2(env, "param", "get", "/segmentation", "camera_names", *SLOW))
        with spinning(ros_context, probe.node), camera(probe, "/journey/image_raw"):
            masks = probe.subscribe("/segmentation/mask")
            assert masks.wait_count(3, START_S), node.text()[-3000:]
            # the mask topic as a user looks at it
            # (the type named: without it, echo gives up when discovery has not yet seen the publisher)
            echo = ok(
                ros2(
                    env,
                    "topic",
                    "echo",
                    "--once",
                    "/segmentation/mask",
                    "sensor_msgs/msg/Image",
                    "--field",
                    "encoding",
                    *NO_DAEMON,
                )
            )
            assert echo.strip().splitlines()[0] == "mono8", echo
            hz = Process(
                [ros2_executable(), "topic", "hz", "/segmentation/mask", "--window", "5"], env, tmp_path / "hz.log"
            )
            found = hz.wait_for(r"average rate: ([0-9.]+)", timeout=60)
            hz.ctrl_c()
            assert 1.0 < float(found.group(1)) < 8.0, hz.text()
            # a dynamic parameter set from the command line takes effect: masks stop, then resume
            out = ok(ros2(env, "param", "set", "/segmentation", "publish_mask", "false", *NO_DAEMON, "--timeout", "30"))
            assert "Set parameter successful" in out, out
            time.sleep(1.0)
            before = len(masks.items)
            time.sleep(2.0)
            assert len(masks.items) == before, "masks kept coming with publish_mask false"
            assert "Boolean value is: False" in ok(ros2(env, "param", "get", "/segmentation", "publish_mask", *SLOW))
            ok(ros2(env, "param", "set", "/segmentation", "publish_mask", "true", *NO_DAEMON, "--timeout", "30"))
            assert masks.wait_count(before + 2, 30), "masks did not resume"
            # a read-only one is refused, and says why
            out = ros2(env, "param", "set", "/segmentation", "backend", "onnxruntime", *NO_DAEMON, "--timeout", "30")
            assert "Setting parameter failed" in out.stdout + out.stderr, out
    finally:
        probe.destroy()
        code = node.ctrl_c()
    assert code == 0, node.text()[-3000:]
    assert "Traceback" not in node.text(), node.text()


def test_ros2_lifecycle_journey(env, seeded_weights, ros_context, tmp_path):
    node = run(
        env,
        tmp_path / "node.log",
        "segmentation_lifecycle_node",
        "--ros-args",
        "-r",
        "__node:=managed",
        "-r",
        "image:=/managed/image_raw",
        "-p",
        f"weights:={seeded_weights}",
        "-p",
        "backend:=torch",
        "-p",
        "num_threads:=1",
    )
    probe = Probe(ros_context, "lifecycle_probe")
    try:
        deadline = time.monotonic() + START_S
        while "unconfigured" not in ros2(env, "lifecycle", "get", "/managed", *SLOW).stdout:
            assert node.proc.poll() is None and time.monotonic() < deadline, node.text()
            time.sleep(1.0)
        with spinning(ros_context, probe.node), camera(probe, "/managed/image_raw"):
            masks = probe.subscribe("/managed/mask")
            for transition, state in (("configure", "inactive"), ("activate", "active")):
                out = ok(ros2(env, "lifecycle", "set", "/managed", transition, *SLOW, timeout=START_S))
                assert "Transitioning successful" in out, out
                assert state in ok(ros2(env, "lifecycle", "get", "/managed", *SLOW))
            assert masks.wait_count(2, START_S), node.text()[-3000:]
            out = ok(ros2(env, "lifecycle", "set", "/managed", "deactivate", *SLOW))
            assert "Transitioning successful" in out, out
            time.sleep(1.0)
            before = len(masks.items)
            time.sleep(2.0)
            assert len(masks.items) == before, "an inactive node published masks"
            out = ok(ros2(env, "lifecycle", "set", "/managed", "shutdown", *SLOW))
            assert "Transitioning successful" in out, out
            assert "finalized" in ok(ros2(env, "lifecycle", "get", "/managed", *SLOW))
    finally:
        probe.destroy()
        code = node.ctrl_c()
    assert code == 0 and "Traceback" not in node.text(), node.text()[-3000:]


def test_ros2_component_load_list_unload_journey(env, seeded_weights, ros_context, tmp_path):
    container = run(env, tmp_path / "container.log", "component_container")
    probe = Probe(ros_context, "component_probe")
    try:
        deadline = time.monotonic() + 60
        while "/ComponentManager" not in ros2(env, "component", "list", *SLOW).stdout:
            assert container.proc.poll() is None and time.monotonic() < deadline, container.text()
        with spinning(ros_context, probe.node), camera(probe, "/composed/image_raw"):
            masks = probe.subscribe("/perception/seg/mask")
            out = ros2(
                env,
                "component",
                "load",
                "/ComponentManager",
                "bevanet_ros",
                "bevanet_ros::SegmentationNode",
                "--node-name",
                "seg",
                "--node-namespace",
                "/perception",
                "-r",
                "image:=/composed/image_raw",
                "-p",
                f"weights:={seeded_weights}",
                "-p",
                "backend:=torch",
                "-p",
                "num_threads:=1",
                *SLOW,
                timeout=START_S,
            )
            assert "Loaded component 1 into '/ComponentManager' container node as '/perception/seg'" in ok(out)
            listing = component_list(env, r"/ComponentManager\n\s+1\s+/perception/seg\n")
            assert re.search(r"/ComponentManager\n\s+1\s+/perception/seg\n", listing), listing
            assert masks.wait_count(2, START_S), container.text()[-3000:]
            # a name the container does not know: refused in one line, the container stays up
            bad = ros2(env, "component", "load", "/ComponentManager", "bevanet_ros", "bevanet_ros::Nope", *SLOW)
            assert bad.returncode != 0 and "no component" in (bad.stdout + bad.stderr).lower(), bad
            assert "Unloaded component 1" in ok(ros2(env, "component", "unload", "/ComponentManager", "1", *SLOW))
            assert "/perception/seg" not in ok(ros2(env, "component", "list", *SLOW))
            # a launch file loads the node into the running container and ends; the node stays
            launched = ros2(
                env,
                "launch",
                "bevanet_ros",
                "segmentation.launch.py",
                "container:=/ComponentManager",
                "node_name:=from_launch",
                "camera_topics:=/composed/image_raw",
                f"weights:={seeded_weights}",
                "backend:=torch",
                timeout=START_S,
            )
            assert "Loaded node '/from_launch' in container '/ComponentManager'" in ok(launched), launched.stdout
            masks = probe.subscribe("/from_launch/mask")
            assert masks.wait_count(2, START_S), container.text()[-3000:]
            assert re.search(r"\s2\s+/from_launch\n", component_list(env, r"\s2\s+/from_launch\n"))
    finally:
        probe.destroy()
        code = container.ctrl_c()
    assert code == 0 and "Traceback" not in container.text(), container.text()[-3000:]
    assert not pid_alive(container.proc.pid)
