"""The RViz view written from the node's topic names (bevanet_core.serving.rviz_config), without
ROS: the committed config/segmentation.rviz is the generator's output for the default launch
arguments; namespace, node name, several cameras, camera names, compressed input and the output
QoS reach the displays; `bevanet-rviz-config` writes what the launch file writes. That the names
are the ones the running node uses is checked against `ros2 topic list` in test_launch_live.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bevanet_core.cli import rviz_config as cli
from bevanet_core.serving import launch_plan, rviz_config
from bevanet_core.serving.outputs import OUTPUTS
from bevanet_core.serving.params import NodeSettings

REPO = Path(__file__).resolve().parents[1]


def plan(**arguments: str) -> launch_plan.LaunchPlan:
    return launch_plan.plan_launch(dict(launch_plan.default_arguments(), **arguments), str(REPO))


def displays(text: str) -> dict[str, dict]:
    document = yaml.safe_load(text)
    shown = document["Visualization Manager"]["Displays"]
    assert all(d["Class"] == "rviz_default_plugins/Image" for d in shown)
    by_name = {d["Name"]: d for d in shown}
    assert len(by_name) == len(shown), "two displays share a name"
    # every display has its docked panel in the window layout, and nothing else does
    assert set(document["Window Geometry"]) - {"Displays", "Height", "Width"} == set(by_name)
    return by_name


def topics(text: str) -> dict[str, str]:
    return {name: d["Topic"]["Value"] for name, d in displays(text).items()}


def test_the_committed_config_is_the_generators_output_for_the_default_launch_arguments():
    default = plan()
    expected = rviz_config.render(default.settings, default.namespace, default.node_name)
    committed = (REPO / "config" / launch_plan.RVIZ_CONFIG).read_text()
    assert committed == expected, (
        "config/segmentation.rviz is stale: bevanet-rviz-config --out config/segmentation.rviz"
    )
    assert topics(committed) == {
        "Camera": "/camera/image_raw",
        "Overlay": "/segmentation/overlay",
        "Colour mask": "/segmentation/color_mask",
        "Mask (class ids)": "/segmentation/mask",
        "Confidence": "/segmentation/confidence",
    }
    shown = displays(committed)
    # the camera display is best effort (it matches best-effort and reliable publishers); the
    # outputs are reliable by default; the class ids and the confidence (off by default) wait
    # for a click
    assert shown["Camera"]["Topic"]["Reliability Policy"] == "Best Effort"
    assert shown["Overlay"]["Topic"]["Reliability Policy"] == "Reliable"
    assert [name for name, d in shown.items() if d["Enabled"]] == ["Camera", "Overlay", "Colour mask"]
    assert yaml.safe_load(committed)["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera"


def test_two_cameras_in_a_namespace_with_compressed_input():
    """The README's multi-camera launch line, with the sample bag's compressed transport."""
    two = plan(namespace="perception", camera_topics="/front/image_raw,/rear/image_raw", input_transport="compressed")
    text = rviz_config.render(two.settings, two.namespace, two.node_name)
    got = topics(text)
    expected = {}
    for camera, topic in (("cam0", "/front/image_raw"), ("cam1", "/rear/image_raw")):
        expected[f"{camera}: camera"] = topic + "/compressed"  # RViz2 takes the transport from the suffix
        for output, title in (
            ("overlay", "overlay"),
            ("color_mask", "colour mask"),
            ("mask", "mask (class ids)"),
            ("confidence", "confidence"),
        ):
            expected[f"{camera}: {title}"] = f"/perception/segmentation/{camera}/{output}"
    assert got == expected
    assert "/perception/segmentation; cameras: cam0 /front/image_raw/compressed, cam1 " in text


def test_camera_names_node_name_relative_topics_and_output_qos():
    args = dict(
        namespace="/robot/perception/",
        node_name="seg",
        camera_topics="image,/rear/image_raw",  # a relative name resolves in the node's namespace
        camera_names="front,rear",
        output_qos="best_effort",
        output_qos_depth="3",
        publish_confidence="true",
        publish_overlay="false",
    )
    p = plan(**args)
    shown = displays(rviz_config.render(p.settings, p.namespace, p.node_name))
    assert shown["front: camera"]["Topic"]["Value"] == "/robot/perception/image"
    assert shown["rear: camera"]["Topic"]["Value"] == "/rear/image_raw"
    assert shown["rear: colour mask"]["Topic"]["Value"] == "/robot/perception/seg/rear/color_mask"
    assert shown["front: confidence"]["Enabled"] and not shown["front: overlay"]["Enabled"]
    out = shown["rear: mask (class ids)"]["Topic"]
    assert (out["Reliability Policy"], out["Depth"]) == ("Best Effort", 3)
    assert p.rviz_config.endswith("/rviz/robot_perception_seg.rviz")


def test_every_output_of_the_node_has_a_display_per_camera():
    settings = NodeSettings.from_values({"input_topics": ["/a", "/b", "/c"]})
    views = rviz_config.image_views(settings, "ns", "node")
    for camera in settings.cameras:
        assert {v.output for v in views if v.camera == camera} == {"camera", *OUTPUTS}
    assert len({v.topic for v in views}) == len(views)


@pytest.mark.parametrize(
    "name, namespace, node, expanded",
    [
        ("/abs/topic", "ns", "node", "/abs/topic"),
        ("rel", "", "node", "/rel"),
        ("rel/sub", "/a/b/", "node", "/a/b/rel/sub"),
        ("~/mask", "", "segmentation", "/segmentation/mask"),
        ("~/cam0/mask", "/perception", "segmentation", "/perception/segmentation/cam0/mask"),
        ("~", "perception", "segmentation", "/perception/segmentation"),
    ],
)
def test_expand_topic_name_follows_ros_rules(name, namespace, node, expanded):
    assert rviz_config.expand_topic_name(name, namespace, node) == expanded


def test_the_launch_path_is_under_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BEVANET_CACHE", str(tmp_path))
    assert rviz_config.rviz_config_path("", "segmentation") == tmp_path / "rviz" / "segmentation.rviz"
    assert plan(namespace="perception").rviz_config == str(tmp_path / "rviz" / "perception_segmentation.rviz")


def test_the_command_writes_what_the_launch_file_writes(tmp_path, capsys):
    arguments = ["namespace:=perception", "camera_topics:=/front/image_raw,/rear/image_raw", "camera_names:=a,b"]
    out = tmp_path / "views" / "seg.rviz"
    assert cli.main(arguments + ["--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said == f"wrote {out}: 10 image displays of /perception/segmentation (rviz2 -d {out})\n"
    p = plan(namespace="perception", camera_topics="/front/image_raw,/rear/image_raw", camera_names="a,b")
    assert out.read_text() == rviz_config.render(p.settings, p.namespace, p.node_name)
    # without --out, the view goes to stdout
    assert cli.main(arguments) == 0
    assert capsys.readouterr().out == out.read_text()


def test_the_command_refuses_a_bad_value_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["input_transport:=jpeg"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    params = cli.share_dir() / "config" / "segmentation.yaml"
    assert [line for line in err.splitlines() if "error" in line] == [
        f"{cli.PROG}: error: variant 'bevanet_s' ({params}) with the given launch "
        "arguments: parameter 'input_transport' got 'jpeg'; expected one of: 'raw', 'compressed'"
    ]
