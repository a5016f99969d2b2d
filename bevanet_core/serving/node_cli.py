"""`--help` of the node executables, answered before ROS (or torch) is imported."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .params import node_help

_SCRIPTS = ("__main__.py", "segmentation_node.py", "lifecycle_segmentation_node.py", "")


def wants_help(argv: Sequence[str]) -> bool:
    """-h/--help among the arguments before --ros-args (what follows belongs to ROS); `argv`
    includes the program name."""
    own = list(argv[1:])
    if "--ros-args" in own:
        own = own[: own.index("--ros-args")]
    return any(a in ("-h", "--help") for a in own)


def help_text(argv: Sequence[str], node_name: str, lifecycle: bool) -> str | None:
    """The usage and every parameter when `argv` asks for help, else None."""
    if not wants_help(argv):
        return None
    prog = os.path.basename(argv[0]) if argv else ""
    if prog in _SCRIPTS:
        prog = "python -m bevanet_ros." + ("lifecycle_segmentation_node" if lifecycle else "segmentation_node")
    return node_help(prog, node_name, lifecycle=lifecycle)
