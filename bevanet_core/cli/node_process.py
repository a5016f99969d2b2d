"""The segmentation node in its own process, as deployed, for `bevanet-demo --spawn-node` (no ROS
here: the caller names the node's command line)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from ..options import parse_size


def spawn_node(node_command: list[str], args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    """The segmentation node as deployed: its own process, `image` remapped to --node-input,
    the tool's model options as its parameters. Its camera subscription is reliable: the replay
    sends one frame at a time, and a best-effort subscription loses large frames to transport
    when the CPU is busy, which would count as dropped by the node."""
    params = {
        "input_qos": "reliable",
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
        "resize": args.resize,
    }
    if args.weights is not None:
        params["weights"] = str(Path(args.weights).resolve())
    if args.input_size:
        w, h = parse_size(str(args.input_size), "--input-size")
        params.update(input_width=w, input_height=h)
    if args.threads:
        params["num_threads"] = args.threads
    cmd = [*node_command, "--ros-args"]
    cmd += ["-r", f"image:={args.node_input}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
