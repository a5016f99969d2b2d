"""bevanet-demo (the README's main command) and the sample bag the repository ships."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("rosbags", reason="the rosbags library is not installed")
torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

from bevanet_core.bags import evaluate, messages  # noqa: E402
from bevanet_core.bags import report as report_pictures  # noqa: E402
from bevanet_core.bags.reader import BagReader  # noqa: E402
from bevanet_core.checkpoint import ModelInfo, save_weights  # noqa: E402
from bevanet_core.cli import demo, make_bag  # noqa: E402
from bevanet_core.data.classes import CAMVID_CLASSES, CAMVID_PALETTE, colorize  # noqa: E402
from bevanet_core.models import build_model  # noqa: E402
from bevanet_core.serving import decode  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bags" / "solid_white_right"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core box a second one mostly waits (4x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "seeded.safetensors"
    save_weights(
        build_model("bevanet_s", num_classes=11).eval(),
        path,
        ModelInfo.default("bevanet_s", 11, input_size=(64, 64)),
    )
    return path


def test_shipped_sample_bag():
    files = [p for p in SAMPLE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert demo.find_sample_bag() == SAMPLE
    with BagReader(SAMPLE) as bag:
        assert bag.recovered is None
        assert {t: (i.msgtype, i.count) for t, i in bag.topics.items()} == {
            "/camera/image_raw/compressed": (messages.COMPRESSED_IMAGE, 111),
            "/camera/camera_info": (messages.CAMERA_INFO, 111),
        }
        raw = next(bag.messages(["/camera/image_raw/compressed"]))
        assert decode.compressed_to_rgb(bag.deserialize(raw)).shape == (270, 480, 3)


def test_sample_bag_is_what_the_readme_command_makes(shared_data, tmp_path):
    """bags/README.md's command, rerun, gives the same messages as the committed bag."""
    readme = (REPO / "bags" / "README.md").read_text()
    assert "--every 2 --frame-size 480x270 --compressed --jpeg-quality 85 --frame-id camera" in readme
    out = tmp_path / "again"
    assert (
        make_bag.main(
            [
                "--video",
                str(shared_data / "driving_video" / "solidWhiteRight.mp4"),
                "--every",
                "2",
                "--frame-size",
                "480x270",
                "--compressed",
                "--jpeg-quality",
                "85",
                "--frame-id",
                "camera",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with BagReader(SAMPLE) as a, BagReader(out) as b:
        pairs = zip(a.messages(), b.messages(), strict=True)
        mismatched = sum(1 for x, y in pairs if (x.topic, x.log_time) != (y.topic, y.log_time) or x.data != y.data)
    assert mismatched == 0


def test_demo_refuses_to_run_without_the_shipped_model(monkeypatch, tmp_path, capsys):
    import bevanet_core.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "DEFAULT_WEIGHTS", tmp_path / "bevanet_s_camvid.safetensors")
    assert demo.main(["--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "shipped default model is not there yet" in err and "--weights" in err
    assert not (tmp_path / "out").exists()


def test_demo_writes_every_output(weights, tmp_path, capsys):
    out = tmp_path / "demo"
    code = demo.main(["--weights", str(weights), "--out", str(out), "--max-frames", "3", "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 3 and report["miou"] is None and report["errors"] == []
    assert report["latency_ms"]["p50"] > 0 and report["fps"] > 0 and report["bag_file"] == str(SAMPLE)
    for name in ("report.md", "montage.png", "overlay.mp4", "plot.png"):
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in printed
    assert str(out / "segmented_bag") in printed and "mIoU n/a" in printed
    with BagReader(out / "segmented_bag") as bag:
        counts = {t: i.count for t, i in bag.topics.items()}
    assert counts == {
        "/camera/image_raw/compressed": 3,
        "/camera/camera_info": 3,
        evaluate.MASK_TOPIC: 3,
        evaluate.COLOR_TOPIC: 3,
        evaluate.OVERLAY_TOPIC: 3,
    }
    import cv2

    # the montage: column titles over the rows, the class colour legend under them
    montage = cv2.cvtColor(cv2.imread(str(out / "montage.png")), cv2.COLOR_BGR2RGB)
    legend = report_pictures.Legend.of(CAMVID_CLASSES, lambda m: colorize(m, CAMVID_PALETTE))
    strip = legend.strip(montage.shape[1])
    assert np.array_equal(montage[-strip.shape[0] :], strip)
    assert (montage[:26].min(axis=2) > 200).sum() > 50  # the titles' text
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 3
    # a second run replaces the outputs instead of failing on the existing bag
    assert demo.main(["--weights", str(weights), "--out", str(out), "--max-frames", "2", "--no-video"]) == 0
    assert json.loads((out / "report.json").read_text())["frames"] == 2


def test_core_demo_names_the_console_script_for_the_dds_modes(weights, tmp_path, capsys):
    """bevanet_core.cli.demo has no ROS: its DDS modes come from bevanet_ros.tools."""
    out = tmp_path / "core"
    assert demo.main(["--spawn-node", "--weights", str(weights), "--out", str(out)]) == 1
    assert "--spawn-node needs the ROS package's node launcher" in capsys.readouterr().err
    code = demo.main(["--through-node", "--weights", str(weights), "--out", str(out)])
    assert code == 1 and "run the bevanet-demo console script" in capsys.readouterr().err


def test_demo_through_a_running_node_over_dds(weights, tmp_path, monkeypatch):
    """--through-node: the real segmentation node in this process, the demo as a DDS client."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not installed")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from bevanet_ros import segmentation_node as node_mod
    from bevanet_ros.tools import demo_main

    monkeypatch.setenv("ROS_DOMAIN_ID", str(40 + (hash(str(tmp_path)) % 50)))  # away from other tests
    rclpy.init()
    node = executor = None
    try:
        node = node_mod.SegmentationNode(
            parameter_overrides=[
                Parameter("weights", value=str(weights)),
                Parameter("input_qos", value="reliable"),
                Parameter("input_qos_depth", value=5),
                Parameter("num_threads", value=1),
            ],
            cli_args=["--ros-args", "-r", "image:=/demo_test/image"],
        )
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        out = tmp_path / "dds"
        code = demo_main(
            [
                "--weights",
                str(weights),
                "--out",
                str(out),
                "--max-frames",
                "3",
                "--no-video",
                "--through-node",
                "--node-input",
                "/demo_test/image",
                "--node-mask",
                "/segmentation/mask",
                "--node-timeout",
                "30",
            ]
        )
        report = json.loads((out / "report.json").read_text())
        assert code == 0 and report["mode"] == "dds-node"
        assert report["frames"] == 3 and report["dropped"] == 0
        with BagReader(out / "segmented_bag") as bag:
            topic = [evaluate.MASK_TOPIC]
            masks = [decode.image_to_array(bag.deserialize(r)) for r in bag.messages(topic)]
        assert len(masks) == 3 and masks[0].shape == (270, 480)
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def test_demo_spawns_the_node_and_replays_through_it(weights, tmp_path, monkeypatch):
    """--spawn-node: the node as deployed (its own process), the bag replayed through it over DDS,
    the node stopped afterwards."""
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not installed")
    from bevanet_ros.tools import demo_main

    monkeypatch.setenv("ROS_DOMAIN_ID", str(100 + (hash(str(tmp_path)) % 50)))
    out = tmp_path / "spawned"
    code = demo_main(
        [
            "--spawn-node",
            "--weights",
            str(weights),
            "--input-size",
            "64x64",
            "--threads",
            "1",
            "--max-frames",
            "3",
            "--no-video",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    log = (out / "node.log").read_text()
    assert report["frames"] == 3 and report["dropped"] == 0, (report["bags"], log[-3000:])
    assert '"node_started_by_demo": true' in json.dumps(report) and '"mode": "dds-node"' in json.dumps(report)
    assert "loaded bevanet_s" in (out / "node.log").read_text()
