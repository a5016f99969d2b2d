"""The launch files run for real, as a user runs them: `ros2 launch bevanet_ros <file>` (the real
ros2cli) against the package as `colcon build` installs it, the node started from
`lib/bevanet_ros`, CamVid frames published over DDS from this process, masks, parameters and
`vision_msgs/LabelInfo` received back from the launched node's process; the bag replay counted
frame by frame; the node in a component container.

Needs `ros2`, `launch`, `launch_ros`, `vision_msgs` and colcon: a sourced ROS 2, or
scripts/bootstrap.sh beside ../shared/ros-src (scripts/test.sh sources .venv/ros-src/env.bash).
Without them every test here skips and says so. RViz is not run (rviz2 is not installable from
PyPI): rviz:=true is checked to start the node anyway, with a note.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

for _module in ("launch", "launch_ros", "vision_msgs.msg", "colcon_core"):
    pytest.importorskip(
        _module,
        reason=f"{_module} is not installed: source a ROS 2 installation, or run "
        "scripts/bootstrap.sh with ../shared/ros-src beside the repository",
    )

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rcl_interfaces.msg import ParameterType  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from ros2_cli_support import (  # noqa: E402
    Process,
    colcon_build,
    install_env,
    pid_alive,
    ros2,
    ros2_executable,
    ros2_missing_reason,
)
from test_ros_support import (  # noqa: E402
    DOMAIN_ID,
    Probe,
    image_msg,
    ros_context,
    save_seeded_weights,
    spinning,
)
from vision_msgs.msg import LabelInfo  # noqa: E402

from bevanet_core.data.classes import CAMVID_CLASSES  # noqa: E402

__all__ = ["ros_context"]
REPO = Path(__file__).resolve().parents[1]
START_S = 180.0  # the node imports torch and loads a model on a shared, busy CPU
if ros2_missing_reason():
    pytest.skip(ros2_missing_reason(), allow_module_level=True)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """`colcon build` of this package into a throw-away workspace; its install prefix."""
    return colcon_build(tmp_path_factory.mktemp("colcon_ws"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_seeded_weights(tmp_path_factory.mktemp("weights") / "seeded.safetensors")


class Launch(Process):
    """`ros2 launch bevanet_ros <file> args...` in its own process group, output to a log."""

    def __init__(
        self, prefix: Path, log: Path, launch_file: str, environment: dict[str, str] | None = None, **arguments: str
    ) -> None:
        cmd = [ros2_executable(), "launch", "bevanet_ros", launch_file]
        cmd += [f"{k}:={v}" for k, v in arguments.items()]
        super().__init__(cmd, {**install_env(prefix, DOMAIN_ID), **(environment or {})}, log)

    def node_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", self.text())]

    def stop(self) -> int:
        """Ctrl-C, as a user stops `ros2 launch`; launch then stops the processes it started."""
        return self.ctrl_c()


def camvid_frames(shared_data: Path, n: int = 2) -> list[np.ndarray]:
    import cv2

    lines = (shared_data / "camvid" / "val.lst").read_text().split("\n")
    frames = []
    for line in lines[:n]:
        image = cv2.imread(str(shared_data / "camvid" / line.split()[0]), cv2.IMREAD_COLOR)
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return frames


def get_parameters(probe: Probe, node: str, names: list[str]) -> dict[str, object]:
    """The values of `names` on the running `node`, through its get_parameters service."""
    client = probe.node.create_client(GetParameters, f"{node}/get_parameters")
    try:
        assert client.wait_for_service(timeout_sec=START_S), f"no {node}/get_parameters service"
        future = client.call_async(GetParameters.Request(names=names))
        deadline = time.monotonic() + 30.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert future.done(), f"{node}/get_parameters did not answer"
        fields = {
            ParameterType.PARAMETER_BOOL: "bool_value",
            ParameterType.PARAMETER_INTEGER: "integer_value",
            ParameterType.PARAMETER_DOUBLE: "double_value",
            ParameterType.PARAMETER_STRING: "string_value",
            ParameterType.PARAMETER_STRING_ARRAY: "string_array_value",
        }
        out: dict[str, object] = {}
        for name, value in zip(names, future.result().values, strict=True):
            field = fields.get(value.type)
            out[name] = None if field is None else getattr(value, field)
            if isinstance(out[name], (list, tuple)) or field == "string_array_value":
                out[name] = list(out[name])
        return out
    finally:
        probe.node.destroy_client(client)


def send_until_masks(probe: Probe, pairs: list[tuple[str, str]], frames, launch: Launch):
    """Publishes CamVid frames on each camera topic until a mask comes back on its mask topic;
    returns {mask topic: first mask message}."""
    pubs, cols = [], []
    for camera_topic, mask_topic in pairs:
        cols.append(probe.subscribe(mask_topic))
        pubs.append(probe.publisher(camera_topic))
    deadline = time.monotonic() + START_S
    for pub in pubs:
        while pub.get_subscription_count() < 1:
            assert launch.proc.poll() is None, "launch exited:\n" + launch.text()[-3000:]
            assert time.monotonic() < deadline, "the node never subscribed:\n" + launch.text()
            time.sleep(0.1)
    i = 0
    while not all(c.items for c in cols):
        assert time.monotonic() < deadline, "no masks within the time:\n" + launch.text()[-3000:]
        assert launch.proc.poll() is None, "launch exited:\n" + launch.text()[-3000:]
        for k, pub in enumerate(pubs):
            if not cols[k].items:
                pub.publish(image_msg(frames[i % len(frames)], "rgb8", frame_id=f"camvid{k}"))
        i += 1
        for c in cols:
            c.wait(lambda items: bool(items), timeout=0.5)
    return {pairs[k][1]: cols[k].items[0] for k in range(len(pairs))}


def test_segmentation_launch_one_camera_namespace_weights_params_file(
    prefix, weights, ros_context, shared_data, tmp_path
):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    overlay_alpha: 0.25\n    input_qos: reliable\n")
    launch = Launch(
        prefix,
        tmp_path / "launch.log",
        "segmentation.launch.py",
        variant="bevanet_s",
        weights=str(weights),
        camera_topics="/front/image_raw",
        namespace="perception",
        params_file=str(params_file),
        use_sim_time="false",
        input_size="320x240",
    )
    probe = Probe(ros_context, "launch_probe")
    try:
        with spinning(ros_context, probe.node):
            labels = probe.subscribe("/perception/segmentation/label_info", LabelInfo, latched=True)
            frames = camvid_frames(shared_data)
            got = send_until_masks(probe, [("/front/image_raw", "/perception/segmentation/mask")], frames, launch)
            mask = got["/perception/segmentation/mask"]
            assert (mask.encoding, mask.width, mask.height) == ("mono8", 480, 360)
            assert mask.header.frame_id == "camvid0"
            values = get_parameters(
                probe,
                "/perception/segmentation",
                [
                    "variant",
                    "weights",
                    "input_topics",
                    "use_sim_time",
                    "overlay_alpha",
                    "input_qos",
                    "input_width",
                    "input_height",
                ],
            )
            assert values == {
                "variant": "bevanet_s",
                "weights": str(weights),
                "input_width": 320,  # from input_size; the masks stay at the camera's size
                "input_height": 240,
                "input_topics": ["/front/image_raw"],
                "use_sim_time": False,
                "overlay_alpha": 0.25,  # from params_file
                "input_qos": "reliable",  # from params_file
            }
            # LabelInfo from the launched node's process, latched for a late subscriber
            assert labels.wait_count(1, START_S), "no vision_msgs/LabelInfo received"
            info = labels.items[0]
            assert [c.class_name for c in info.class_map] == list(CAMVID_CLASSES)
            assert [c.class_id for c in info.class_map] == list(range(len(CAMVID_CLASSES)))
        # the node runs from the colcon install: <prefix>/lib/bevanet_ros/segmentation_node
        pids = launch.node_pids()
        assert len(pids) == 1, launch.text()
        cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
        assert str(prefix / "lib" / "bevanet_ros" / "segmentation_node").encode() in cmdline
    finally:
        probe.destroy()
        launch.stop()
    # Ctrl-C on the launch stops the node it started
    deadline = time.monotonic() + 30.0
    while pid_alive(pids[0]):
        assert time.monotonic() < deadline, "node outlived its launch:\n" + launch.text()[-2000:]
        time.sleep(0.2)


def test_segmentation_launch_two_cameras_and_sim_time(prefix, weights, ros_context, shared_data, tmp_path):
    launch = Launch(
        prefix,
        tmp_path / "launch.log",
        "segmentation.launch.py",
        weights=str(weights),
        camera_topics="/cam_a/image_raw,/cam_b/image_raw",
        use_sim_time="true",
    )
    probe = Probe(ros_context, "launch_probe2")
    try:
        with spinning(ros_context, probe.node):
            frames = camvid_frames(shared_data)
            got = send_until_masks(
                probe,
                [
                    ("/cam_a/image_raw", "/segmentation/cam0/mask"),
                    ("/cam_b/image_raw", "/segmentation/cam1/mask"),
                ],
                frames,
                launch,
            )
            assert got["/segmentation/cam0/mask"].header.frame_id == "camvid0"
            assert got["/segmentation/cam1/mask"].header.frame_id == "camvid1"
            values = get_parameters(probe, "/segmentation", ["input_topics", "use_sim_time", "variant"])
            assert values == {
                "input_topics": ["/cam_a/image_raw", "/cam_b/image_raw"],
                "use_sim_time": True,
                "variant": "bevanet_s",
            }
    finally:
        probe.destroy()
        launch.stop()


def test_segmentation_launch_sets_node_parameters_from_the_launch_line(prefix, weights, tmp_path):
    """The README's journey: `foxglove_port:=... num_threads:=1` on the launch line reach the node
    (as `ros2 param get` shows), and the Foxglove view listens on that port."""
    pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (pip install -e .[foxglove])")
    import socket

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = install_env(prefix, DOMAIN_ID)
    launch = Launch(
        prefix,
        tmp_path / "launch.log",
        "segmentation.launch.py",
        weights=str(weights),
        backend="torch",
        foxglove_port=str(port),
        num_threads="1",
        publish_confidence="true",
    )
    try:
        launch.wait_for(r"camera 'cam0': ", timeout=START_S)
        for name, shown in (
            ("num_threads", "Integer value is: 1"),
            ("foxglove_port", f"Integer value is: {port}"),
            ("publish_confidence", "Boolean value is: True"),
        ):
            done = ros2(env, "param", "get", "/segmentation", name, "--no-daemon", "--spin-time", "3")
            assert done.returncode == 0 and shown in done.stdout, f"{name}: {done.stdout}{done.stderr}"
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # the Foxglove view accepts connections on the port given on the launch line
    finally:
        rc = launch.stop()
    assert rc == 0, launch.text()[-3000:]


BAG = str(REPO / "bags" / "solid_white_right")


@pytest.mark.parametrize(
    "launch_file, arguments, named",
    [
        ("segmentation.launch.py", {"variant": "bevanet_xl"}, "'variant'"),
        ("segmentation.launch.py", {"use_sim_time": "maybe"}, "'use_sim_time'"),
        ("segmentation.launch.py", {"params_file": "/nonexistent/params.yaml"}, "'params_file'"),
        ("segmentation.launch.py", {"camera_topic": "/front/image_raw"}, "'camera_topic'"),  # a typo
        ("segmentation.launch.py", {"bogus": "1"}, "'bogus'; it declares: variant, "),  # with the valid names
        ("segmentation.launch.py", {"num_threads": "two"}, "'num_threads' must be an integer"),
        ("segmentation.launch.py", {"input_size": "640"}, "'input_size'"),
        ("bag_replay.launch.py", {}, "'bag' is required"),
        ("bag_replay.launch.py", {"bag": "/nonexistent/bag"}, "/nonexistent/bag does not exist"),
        ("bag_replay.launch.py", {"bag": BAG, "camera_topic": "/x"}, "'camera_topic'"),
        # a node parameter is passed on to segmentation.launch.py, which checks it
        ("bag_replay.launch.py", {"bag": BAG, "num_threads": "two"}, "'num_threads' must be an integer"),
        ("bag_replay.launch.py", {"bag": BAG, "camera_topics": "/camera/camera_info"}, "camera_topics"),
    ],
)
def test_a_bad_launch_argument_fails_the_launch_naming_it(prefix, tmp_path, launch_file, arguments, named):
    launch = Launch(prefix, tmp_path / "launch.log", launch_file, **arguments)
    rc = launch.wait(120)
    text = launch.text()
    assert rc != 0, text
    assert named in text, text
    assert not launch.node_pids(), "a process was started:\n" + text


def test_bag_replay_launch_segments_every_frame_of_the_bag_and_ends(prefix, weights, ros_context, tmp_path):
    """The README's replay, as typed: the camera topic and transport come from the bag
    (/camera/image_raw/compressed), the rosbags player (no rosbag2 here) starts once the node has
    subscribed, every frame of the bag comes back as a mask with its stamp, and the launch ends
    by itself once the bag has been played, leaving no process behind. rviz:=true without rviz2:
    one note, the replay goes on."""
    from bevanet_core.bags.player import plan_playback, schedule

    bag = REPO / "bags" / "solid_white_right"
    stamps = sorted({m.log_time for m in schedule(plan_playback(bag))})
    probe = Probe(ros_context, "replay_probe")
    try:
        with spinning(ros_context, probe.node):
            masks = probe.subscribe("/segmentation/mask", depth=200)
            launch = Launch(
                prefix,
                tmp_path / "launch.log",
                "bag_replay.launch.py",
                environment={"BEVANET_CACHE": str(tmp_path / "cache")},
                bag=str(bag),
                weights=str(weights),
                backend="torch",
                rate="0.25",  # the node keeps only the newest frame: a slow, shared CPU keeps up at 3 Hz
                rviz="true",
            )
            rc = launch.wait(START_S + 60)
            text = launch.text()
            assert rc == 0, text[-3000:]
            masks.wait_count(len(stamps), timeout=5)
        got = sorted({m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in masks.items})
        assert got == stamps, f"{len(got)} of {len(stamps)} frames segmented:\n{text[-3000:]}"
        assert text.count("rviz2 is not installed") == 1, text
        view = tmp_path / "cache" / "rviz" / "segmentation.rviz"  # the bag's compressed camera
        assert f"rviz2 -d {view}" in text and "Value: /camera/image_raw/compressed" in view.read_text(), text
        assert "through rosbags" in text and "(compressed)" in text, text
        assert "Traceback" not in text, text
        for pid in launch.node_pids():
            assert not pid_alive(pid), f"process {pid} outlived its launch:\n{text[-2000:]}"
    finally:
        probe.destroy()


def topic_list(env: dict[str, str]) -> dict[str, str]:
    """{topic: type} as `ros2 topic list -t` shows them."""
    done = ros2(env, "topic", "list", "-t", "--no-daemon", "--spin-time", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(re.findall(r"^(/\S*) \[(\S+)\]$", done.stdout, re.M))


@pytest.mark.parametrize(
    "extra, cameras",
    [({}, ("cam0", "cam1")), ({"input_transport": "compressed", "camera_names": "front,rear"}, ("front", "rear"))],
    ids=["raw", "compressed-named"],
)
def test_the_rviz_view_names_the_topics_the_launched_node_uses(prefix, weights, tmp_path, extra, cameras):
    """The README's multi-camera line with rviz:=true (no rviz2 here: the view is written and its
    path given): every topic of the view is in `ros2 topic list` with its type, and every image
    topic there is in the view."""
    env = {"BEVANET_CACHE": str(tmp_path / "cache")}
    launch = Launch(
        prefix,
        tmp_path / "launch.log",
        "segmentation.launch.py",
        environment=env,
        weights=str(weights),
        backend="torch",
        namespace="perception",
        camera_topics="/front/image_raw,/rear/image_raw",
        rviz="true",
        **extra,
    )
    image_types = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}
    camera_type = "sensor_msgs/msg/CompressedImage" if extra else "sensor_msgs/msg/Image"
    try:
        launch.wait_for(rf"camera '{cameras[1]}': ", timeout=START_S)  # both cameras subscribed
        view = tmp_path / "cache" / "rviz" / "perception_segmentation.rviz"
        assert f"rviz2 -d {view}" in launch.text(), launch.text()
        displays = yaml.safe_load(view.read_text())["Visualization Manager"]["Displays"]
        named = {d["Topic"]["Value"]: d["Name"] for d in displays}
        wanted = {t: (camera_type if n.endswith("camera") else "sensor_msgs/msg/Image") for t, n in named.items()}
        assert {n.split(":")[0] for n in named.values()} == set(cameras), named
        for _ in range(10):  # discovery on a busy machine can miss a topic in one look
            listed = topic_list(install_env(prefix, DOMAIN_ID))
            if all(listed.get(t) == kind for t, kind in wanted.items()):
                break
        assert {t: listed.get(t) for t in wanted} == wanted, listed
        shown_images = {t for t, kind in listed.items() if kind in image_types}
        assert shown_images == set(wanted), f"image topics in ros2 topic list but not in the view: {listed}"
        assert len(wanted) == 10, named  # per camera: the camera, overlay, colour mask, mask, confidence
    finally:
        rc = launch.stop()
    assert rc == 0, launch.text()[-3000:]


def test_a_composable_node_in_its_container_serves_masks(prefix, weights, ros_context, shared_data, tmp_path):
    launch = Launch(
        prefix,
        tmp_path / "launch.log",
        "segmentation.launch.py",
        weights=str(weights),
        backend="torch",
        camera_topics="/composed/image_raw",
        composable="true",
    )
    probe = Probe(ros_context, "composed_probe")
    try:
        with spinning(ros_context, probe.node):
            got = send_until_masks(
                probe, [("/composed/image_raw", "/segmentation/mask")], camvid_frames(shared_data), launch
            )
            assert got["/segmentation/mask"].header.frame_id == "camvid0"
        text = launch.text()
        assert "Loaded node '/segmentation' in container '/segmentation_container'" in text, text
        pids = launch.node_pids()
        assert len(pids) == 1, text  # the container, no segmentation_node process
        cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
        assert str(prefix / "lib" / "bevanet_ros" / "component_container").encode() in cmdline
    finally:
        probe.destroy()
        rc = launch.stop()
    assert rc == 0, launch.text()[-3000:]
    assert "Traceback" not in launch.text(), launch.text()
    assert not pid_alive(pids[0])
