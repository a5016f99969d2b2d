"""The RViz2 view of one segmentation node, written from the topics that node names (no ROS).

Per camera: an Image display of the camera (its raw topic, or `<topic>/compressed`, which RViz2
subscribes through image_transport's compressed transport), then the node's image outputs
(`outputs.OUTPUTS`: overlay, colour mask, mask, confidence). The names come from the node's own
rules, `NodeSettings.input_topic` and `NodeSettings.output_prefix`, expanded with ROS 2's rules
for a node's namespace and name, so the view follows `namespace:=`, `node_name:=`, several cameras,
`camera_names:=` and `input_transport:=`. `segmentation.launch.py rviz:=true` writes it for its
own arguments (`rviz_config_path`); `bevanet-rviz-config` writes it alone;
`config/segmentation.rviz` is its output for the default launch arguments.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from bevanet_core.paths import atomic_write, cache_dir

from .outputs import OUTPUTS
from .params import NodeSettings
from .qos import qos_policies

FIXED_FRAME = "camera"  # the sample bag's frame; image displays need no transform
# how each output is shown: its display title, and whether it is on when the view opens (the
# colour mask and the overlay cost the node a lookup and a blend only while someone subscribes)
_OUTPUT_DISPLAYS = {
    "overlay": ("overlay", lambda s: s.publish_overlay),
    "color_mask": ("colour mask", lambda s: s.publish_color_mask),
    "mask": ("mask (class ids)", lambda s: False),  # ids 0..n read as near-black; the colour mask shows them
    "confidence": ("confidence", lambda s: s.publish_confidence),
}
_RELIABILITY = {"RELIABLE": "Reliable", "BEST_EFFORT": "Best Effort", "SYSTEM_DEFAULT": "System Default"}
_DURABILITY = {"VOLATILE": "Volatile", "TRANSIENT_LOCAL": "Transient Local", "SYSTEM_DEFAULT": "System Default"}


@dataclasses.dataclass(frozen=True)
class ImageView:
    """One Image display: what it shows and how it subscribes."""

    name: str
    topic: str
    camera: str
    output: str  # "camera" for the node's input, else an entry of OUTPUTS
    reliability: str  # rclpy's policy name: RELIABLE, BEST_EFFORT, SYSTEM_DEFAULT
    durability: str
    depth: int
    enabled: bool


def expand_topic_name(name: str, namespace: str, node_name: str) -> str:
    """`name` as ROS 2 expands it for node `node_name` in `namespace` (no remapping): '/a' stays,
    '~/a' becomes '/<namespace>/<node>/a', 'a' becomes '/<namespace>/a'."""
    parts = [p for p in namespace.strip("/").split("/") if p]
    if name.startswith("/"):
        return name
    if name == "~" or name.startswith("~/"):
        return "/" + "/".join(parts + [node_name] + [p for p in name[1:].split("/") if p])
    return "/" + "/".join(parts + [p for p in name.split("/") if p])


def image_views(settings: NodeSettings, namespace: str = "", node_name: str = "segmentation") -> list[ImageView]:
    """Every image topic of the node, camera by camera: its input, then its outputs."""

    def expand(name: str) -> str:
        return expand_topic_name(name, namespace, node_name)

    several = len(settings.input_topics) > 1
    out_reliability, out_durability, out_depth = qos_policies(settings.output_qos, settings.output_qos_depth)
    ordered = sorted(OUTPUTS, key=lambda o: list(_OUTPUT_DISPLAYS).index(o) if o in _OUTPUT_DISPLAYS else len(OUTPUTS))

    def name(camera: str, title: str) -> str:
        return f"{camera}: {title}" if several else title.capitalize()

    views = []
    for i, camera in enumerate(settings.cameras):
        # best effort matches every camera publisher, best effort or reliable
        views.append(
            ImageView(
                name(camera, "camera"),
                expand(settings.input_topic(i, expand)),
                camera,
                "camera",
                "BEST_EFFORT",
                "VOLATILE",
                1,
                True,
            )
        )
        for output in ordered:
            title, enabled = _OUTPUT_DISPLAYS.get(output, (output, lambda s: True))
            views.append(
                ImageView(
                    name(camera, title),
                    expand(settings.output_prefix(i) + output),
                    camera,
                    output,
                    out_reliability,
                    out_durability,
                    out_depth,
                    bool(enabled(settings)),
                )
            )
    return views


def _image_display(view: ImageView) -> dict[str, Any]:
    return {
        "Class": "rviz_default_plugins/Image",
        "Enabled": view.enabled,
        "Max Value": 1,
        "Median window": 5,
        "Min Value": 0,
        "Name": view.name,
        "Normalize Range": True,
        "Topic": {
            "Depth": view.depth,
            "Durability Policy": _DURABILITY[view.durability],
            "History Policy": "Keep Last",
            "Reliability Policy": _RELIABILITY[view.reliability],
            "Value": view.topic,
        },
        "Value": view.enabled,
    }


def rviz_config(views: list[ImageView], fixed_frame: str = FIXED_FRAME) -> dict[str, Any]:
    """The .rviz document (RViz2's YAML) with one Image display per view."""
    geometry: dict[str, Any] = {view.name: {"collapsed": False} for view in views}
    geometry.update({"Displays": {"collapsed": False}, "Height": 900, "Width": 1400})
    return {
        "Panels": [
            {
                "Class": "rviz_common/Displays",
                "Help Height": 0,
                "Name": "Displays",
                "Property Tree Widget": {"Expanded": None, "Splitter Ratio": 0.5},
                "Tree Height": 300,
            },
            {"Class": "rviz_common/Views", "Name": "Views"},
        ],
        "Visualization Manager": {
            "Class": "",
            "Displays": [_image_display(view) for view in views],
            "Enabled": True,
            "Global Options": {"Background Color": "48; 48; 48", "Fixed Frame": fixed_frame, "Frame Rate": 30},
            "Name": "root",
            "Tools": [{"Class": "rviz_default_plugins/Interact", "Hide Inactive Objects": True}],
            "Transformation": {"Current": {"Class": "rviz_default_plugins/TF"}},
            "Value": True,
            "Views": {
                "Current": {
                    "Class": "rviz_default_plugins/Orbit",
                    "Distance": 10,
                    "Name": "Current View",
                    "Target Frame": "<Fixed Frame>",
                    "Value": "Orbit (rviz)",
                },
                "Saved": None,
            },
        },
        "Window Geometry": geometry,
    }


def render(
    settings: NodeSettings, namespace: str = "", node_name: str = "segmentation", fixed_frame: str = FIXED_FRAME
) -> str:
    """The text of the .rviz file for the node `node_name` in `namespace` run with `settings`."""
    views = image_views(settings, namespace, node_name)
    node = expand_topic_name("~", namespace, node_name)
    cameras = ", ".join(f"{v.camera} {v.topic}" for v in views if v.output == "camera")
    head = (
        f"# RViz2 view of the segmentation node {node}; cameras: {cameras}.\n"
        "# Written from the node's topic names by bevanet-rviz-config, as segmentation.launch.py\n"
        "# rviz:=true writes it for its own arguments. Open it with: rviz2 -d <this file>\n"
    )
    return head + yaml.safe_dump(rviz_config(views, fixed_frame), sort_keys=False, width=120)


def rviz_config_path(namespace: str, node_name: str) -> Path:
    """Where the launch file writes the view of node `node_name` in `namespace`:
    <cache>/rviz/<namespace>_<node>.rviz (`paths.cache_dir`: $BEVANET_CACHE, else
    ~/.cache/bevanet_ros)."""
    stem = expand_topic_name("~", namespace, node_name).strip("/").replace("/", "_")
    return cache_dir() / "rviz" / f"{stem}.rviz"


def write(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` to `path` atomically, creating its folder."""

    def save(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, save)
