"""Which images one segmentation result becomes, computed once each (no ROS).

The mask is always cheap; the colour mask and the overlay cost a lookup and a blend per pixel,
so they are made only for someone who looks at them (a subscriber, or the Foxglove view, which
shares them instead of computing them again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .params import NodeSettings

# every camera's image outputs, in this order: sensor_msgs/Image publishers at
# `NodeSettings.output_prefix(camera) + name` (~/mask, or ~/<camera>/mask with several cameras)
OUTPUTS = ("mask", "color_mask", "overlay", "confidence")


def render_outputs(
    result: Any, rgb: np.ndarray, segmenter: Any, settings: NodeSettings, watched: Mapping[str, bool], view: bool
) -> tuple[dict[str, tuple[np.ndarray, str]], np.ndarray | None, np.ndarray | None]:
    """({output name: (image, encoding)} to publish, colour mask, overlay). An output is
    published when it is on and, for the colour mask and the overlay, `watched`; with `view`
    (the Foxglove view) those two are made anyway and returned for it."""
    publish_color = settings.publish_color_mask and bool(watched.get("color_mask"))
    publish_overlay = settings.publish_overlay and bool(watched.get("overlay"))
    color = overlay = None
    if view or publish_color:
        color = result.color if result.color is not None else segmenter.colorize(result.mask)
    if view or publish_overlay:
        overlay = segmenter.overlay(rgb, result.mask, settings.overlay_alpha)
    out: dict[str, tuple[np.ndarray, str]] = {}
    if settings.publish_mask:
        out["mask"] = (result.mask, "mono8")
    if publish_color:
        out["color_mask"] = (color, "rgb8")
    if publish_overlay:
        out["overlay"] = (overlay, "rgb8")
    if settings.publish_confidence and result.confidence is not None:
        out["confidence"] = (result.confidence, "mono8")
    return out, color, overlay
