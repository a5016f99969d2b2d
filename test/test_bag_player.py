"""The rosbags bag player: what it plays (plain Python, no ROS), one-line errors for bags it
cannot play, and the `bag_player` process publishing a bag's frames with their timing and
/clock once a subscriber is there (real rclpy + DDS)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bevanet_core.bags import messages
from bevanet_core.bags.player import BagPlayError, parse_remaps, plan_playback, schedule
from bevanet_core.bags.replay_plan import plan_replay, refuse_undeclared
from bevanet_core.bags.writer import BagWriter

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bags" / "solid_white_right"
START_NS = 1_700_000_000_000_000_000


def write_bag(path: Path, raw: int = 4, info: int = 0, period_ns: int = 100_000_000) -> Path:
    """A small MCAP bag: `raw` rgb8 frames on /cam/image_raw, `info` CameraInfo messages."""
    rng = np.random.default_rng(0)
    with BagWriter(path) as bag:
        if raw:
            bag.add_topic("/cam/image_raw", messages.IMAGE)
        if info:
            bag.add_topic("/cam/camera_info", "sensor_msgs/msg/CameraInfo")
        for i in range(max(raw, info)):
            stamp = START_NS + i * period_ns
            if i < raw:
                frame = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
                bag.write("/cam/image_raw", stamp, messages.image_msg(frame, "rgb8", stamp, "cam"))
            if i < info:
                bag.write("/cam/camera_info", stamp, messages.camera_info_msg(32, 24, stamp, "cam"))
    return path


def test_the_sample_bag_plays_its_compressed_camera_with_recorded_timing():
    plan = plan_playback(SAMPLE)
    assert [(t.topic, t.transport, t.camera_topic, t.count) for t in plan.topics] == [
        ("/camera/image_raw/compressed", "compressed", "/camera/image_raw", 111)
    ]
    out = list(schedule(plan, rate=2.0))
    assert len(out) == 111 and all(m.topic == "/camera/image_raw/compressed" for m in out)
    assert out[0].due == 0.0
    # 12.5 Hz recorded: 80 ms apart, 40 ms at rate 2
    assert np.allclose(np.diff([m.due for m in out]), 0.04, atol=1e-6)
    assert out[-1].log_time - out[0].log_time == 110 * 80_000_000


def test_topics_remaps_and_rate_are_checked(tmp_path):
    bag = write_bag(tmp_path / "raw", raw=3, info=3)
    plan = plan_playback(bag, ["/cam/image_raw"], {"/cam/image_raw": "/front/image_raw"})
    assert [(t.published_as, t.transport) for t in plan.topics] == [("/front/image_raw", "raw")]
    assert {m.topic for m in schedule(plan)} == {"/front/image_raw"}
    assert parse_remaps(["/a:=/b"]) == {"/a": "/b"}
    with pytest.raises(BagPlayError, match="not /FROM:=/TO"):
        parse_remaps(["a=b"])
    with pytest.raises(BagPlayError, match="rate must be > 0"):
        next(schedule(plan, rate=0))


@pytest.mark.parametrize(
    "make, topics, words",
    [
        (lambda p: write_bag(p / "info_only", raw=0, info=2), None, ["no image topic", "CameraInfo"]),
        (lambda p: write_bag(p / "both", raw=2, info=2), ["/cam/camera_info"], ["CameraInfo", "Image"]),
        (lambda p: write_bag(p / "both", raw=2, info=2), ["/nope"], ["no topic '/nope'"]),
        (lambda p: p / "missing", None, ["does not exist"]),
        (lambda p: (p / "empty_dir").mkdir() or p / "empty_dir", None, ["no metadata.yaml"]),
    ],
)
def test_a_bag_that_cannot_be_played_gets_one_line(tmp_path, make, topics, words):
    bag = make(tmp_path)
    with pytest.raises(BagPlayError) as err:
        plan_playback(bag, topics)
    text = str(err.value)
    assert "\n" not in text
    for word in words:
        assert word in text, text


def test_a_bag_without_metadata_is_refused_by_the_command_line_in_one_line(tmp_path):
    bag = write_bag(tmp_path / "raw", raw=2)
    (bag / "metadata.yaml").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "bevanet_ros.bag_player", str(bag)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no metadata.yaml" in done.stderr, done.stderr


def test_replay_plan_takes_topics_and_transport_from_the_bag(tmp_path):
    plan = plan_replay({"bag": str(SAMPLE), "rate": "0.5", "loop": "true"}, ros2_bag=False)
    assert (plan.camera_topics, plan.input_transport, plan.player, plan.frames) == (
        "/camera/image_raw",
        "compressed",
        "rosbags",
        111,
    )
    assert plan.command == (
        str(SAMPLE),
        "--clock",
        "--rate",
        "0.5",
        "--loop",
        "--topics",
        "/camera/image_raw/compressed",
    )
    with_ros2 = plan_replay({"bag": str(SAMPLE)}, ros2_bag=True)
    assert with_ros2.player == "ros2" and with_ros2.command[:4] == ("ros2", "bag", "play", str(SAMPLE))
    assert plan_replay({"bag": str(SAMPLE), "player": "rosbags"}, ros2_bag=True).player == "rosbags"
    raw = write_bag(tmp_path / "raw", raw=2)
    assert plan_replay({"bag": str(raw), "camera_topics": "/cam/image_raw"}, ros2_bag=False).input_transport == "raw"


@pytest.mark.parametrize(
    "args, words",
    [
        ({}, ["'bag' is required"]),
        ({"bag": str(SAMPLE), "rate": "0"}, ["'rate'", "> 0"]),
        ({"bag": str(SAMPLE), "player": "vlc"}, ["'player'", "rosbags"]),
        ({"bag": str(SAMPLE), "player": "ros2"}, ["player:=ros2", "not installed"]),
        ({"bag": str(SAMPLE), "camera_topics": "/camera/camera_info"}, ["camera_topics", "/camera/camera_info"]),
        ({"bag": str(SAMPLE), "input_transport": "raw"}, ["no raw image topic"]),
    ],
)
def test_replay_plan_errors_name_the_argument(args, words):
    with pytest.raises(ValueError) as err:
        plan_replay(args, ros2_bag=False)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_an_undeclared_launch_argument_is_refused_by_name():
    refuse_undeclared(["bag:=x", "rate:=2", "--debug"], ["bag", "rate"], "bag_replay.launch.py")
    with pytest.raises(ValueError, match=r"bag_replay.launch.py declares no argument 'rat'; it declares: bag, rate"):
        refuse_undeclared(["bag:=x", "rat:=2"], ["bag", "rate"], "bag_replay.launch.py")


def test_bag_player_waits_for_a_subscriber_then_publishes_every_frame_with_clock(tmp_path):
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python wheels) is not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rosgraph_msgs.msg import Clock
    from test_ros_support import Probe, make_context, shutdown_context, spinning  # sets this process's ROS domain

    bag = write_bag(tmp_path / "raw", raw=5, period_ns=200_000_000)
    player = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bevanet_ros.bag_player",
            str(bag),
            "--clock",
            "--remap",
            "/cam/image_raw:=/played/image_raw",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ctx = make_context()
    try:
        time.sleep(3.0)  # nobody subscribes yet: nothing may be published
        assert player.poll() is None
        probe = Probe(ctx, "player_probe")
        clock = probe.subscribe("/clock", Clock, depth=100)
        with spinning(ctx, probe.node):
            frames = probe.subscribe("/played/image_raw", depth=20)
            assert player.wait(60) == 0
            frames.wait_count(5, timeout=5)
        out = player.stdout.read()
        stamps = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in frames.items]
        assert stamps == [START_NS + i * 200_000_000 for i in range(5)], out
        span = frames.times[-1] - frames.times[0]
        assert 0.6 < span < 2.0, np.diff(frames.times)  # recorded 0.2 s apart: 0.8 s from first to last
        assert clock.items, "no /clock"
        first = clock.items[0].clock.sec * 1_000_000_000 + clock.items[0].clock.nanosec
        assert START_NS <= first <= START_NS + 800_000_000
        assert "waiting for a subscriber on /played/image_raw" in out and "5 messages published" in out, out
        probe.destroy()
    finally:
        if player.poll() is None:
            player.kill()
        shutdown_context(ctx)
