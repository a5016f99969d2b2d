"""The parameter table as text: the defaults file `config/segmentation.yaml`, the README's table and
the node executables' `--help`. `python -m bevanet_core.serving.params [--markdown]` prints the
first or the second.
"""

from __future__ import annotations

import textwrap
from typing import Any

from .spec import PARAMS, RELOAD_NOTE, ParamSpec


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def params_yaml() -> str:
    """The text of `config/segmentation.yaml`: every parameter at its default, read-only ones
    first (`python -m bevanet_core.serving.params > config/segmentation.yaml` rewrites it)."""
    lines = [
        "# Parameters of the segmentation node, one file for every variant: the launch file sets",
        "# `variant` (and the device and precision of variants without shipped weights) on top",
        "# of it, then its non-empty arguments. `ros2 param describe` explains every key.",
        "# Written by `python -m bevanet_core.serving.params`; a test keeps it equal to the spec.",
        "/**:",
        "  ros__parameters:",
    ]
    for read_only in (True, False):
        lines.append(
            "    # --- read-only: changing these needs a restart, or lifecycle cleanup + configure"
            if read_only
            else "    # --- dynamic: `ros2 param set` applies these at once"
        )
        for spec in PARAMS:
            if spec.read_only != read_only:
                continue
            note = f"  # {spec.constraints}" if spec.constraints else ""
            if spec.type_name == "str_list" and not spec.default:
                # an empty YAML list has no type for ROS: leave it declared without a value
                lines.append(f"    # {spec.name}: [a, b]  (default: none)")
            else:
                lines.append(f"    {spec.name}: {_yaml_value(spec.default)}{note}")
    return "\n".join(lines) + "\n"


def _help_default(spec: ParamSpec) -> str:
    return _yaml_value(spec.default)


def node_help(prog: str, node_name: str = "segmentation", lifecycle: bool = False) -> str:
    """`--help` text of the node executables: usage, then every parameter with its type,
    default and description (what `ros2 param describe` would show on a running node)."""
    start = (
        f"Starts unconfigured; drive it with `ros2 lifecycle set /{node_name} configure` and `activate`."
        if lifecycle
        else "Loads the model at start and serves until Ctrl-C."
    )
    lines = [
        f"usage: {prog} [-h] [--ros-args -r image:=TOPIC -p NAME:=VALUE ... --params-file FILE]",
        "",
        "BEVANet semantic segmentation node: sensor_msgs/Image in on `image` (one topic per",
        "entry of input_topics), label masks out on ~/mask (mono8 class ids, 255 = unlabeled),",
        "~/color_mask and ~/overlay (rgb8), ~/confidence, latched ~/label_info",
        "(vision_msgs/LabelInfo) and ~/label_info_json (std_msgs/String), /diagnostics.",
        start,
        "",
        "examples:",
        f"  {prog} --ros-args -r image:=/camera/image_raw",
        f"  {prog} --ros-args -p weights:=model.safetensors -p backend:=onnxruntime",
        f"  {prog} --ros-args --params-file config/segmentation.yaml",
        "",
        "parameters (NAME  TYPE  default: VALUE; read-only ones need a restart to change):",
    ]
    for spec in PARAMS:
        head = f"  {spec.name}  {spec.type_name}  default: {_help_default(spec)}"
        lines.append(head + ("" if spec.read_only else "  (dynamic)"))
        text = spec.description.replace(RELOAD_NOTE, "")
        if spec.constraints:
            text += f" ({spec.constraints})"
        lines.extend("      " + part for part in _wrap(text, 88))
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def params_markdown() -> str:
    """The parameter table of the README (`python -m bevanet_core.serving.params --markdown`)."""
    rows = ["| parameter | type | default | what |", "| --- | --- | --- | --- |"]
    for spec in PARAMS:
        text = spec.description.replace(RELOAD_NOTE, "")
        if spec.constraints and not spec.choices:
            text += f" ({spec.constraints})"
        elif spec.choices and len(spec.choices) <= 6:
            text += " (" + spec.constraints + ")"
        text += "" if spec.read_only else " Dynamic."
        default = _help_default(spec).replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {spec.type_name} | `{default}` | {text} |")
    return "\n".join(rows) + "\n"
