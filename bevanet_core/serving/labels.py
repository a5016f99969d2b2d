"""Class names and colours for the latched label topic (plain Python, no ROS).

The node publishes `vision_msgs/LabelInfo` (ids and names) on `~/label_info` where vision_msgs
imports, and always the JSON below as a `std_msgs/String` on `~/label_info_json`: it also
carries the colours that LabelInfo has no field for, and it is there on installs without
vision_msgs. One topic name never carries two types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

FALLBACK_SCHEMA = "bevanet_ros/label_info/v1"


def label_info_dict(
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    variant: str = "",
    dataset: str = "",
) -> dict[str, Any]:
    """{'schema', 'classes': [{'id', 'name', 'color': [r, g, b]}], 'ignore_index', ...}."""
    if len(palette) < len(class_names):
        raise ValueError(f"palette has {len(palette)} colours for {len(class_names)} classes")
    classes: list[dict[str, Any]] = [
        {"id": i, "name": str(name), "color": [int(c) for c in palette[i][:3]]} for i, name in enumerate(class_names)
    ]
    return {
        "schema": FALLBACK_SCHEMA,
        "classes": classes,
        "ignore_index": int(ignore_index),
        "ignore_color": [0, 0, 0],
        "variant": variant,
        "dataset": dataset or "",
    }


def label_info_json(class_names: Sequence[str], palette: Sequence[Sequence[int]], **kwargs: Any) -> str:
    """The fallback message text (stable key order)."""
    return json.dumps(label_info_dict(class_names, palette, **kwargs), sort_keys=True)
