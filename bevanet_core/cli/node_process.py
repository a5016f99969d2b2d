"""The segmentation node in its own process, as deployed, for `bevanet-demo --spawn-node` (no ROS
here: the caller names the node's command line)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import yaml

from ..options import parse_size


def spawn_node(node_command: list[str], args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    """The segmentation node as deployed: its own process, `image` remapped to --node-input,
    the tool's model options as its parameters, given in a params file beside the log (YAML
    quotes every value, so a weights path holding '#', ': ' or spaces arrives whole, where
    `-p name:=value` would cut it short). Its camera subscription is reliable: the replay
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
    params_file = write_params_file(Path(log_path).with_name(Path(log_path).stem + ".params.yaml"), params)
    cmd = [*node_command, "--ros-args", "-r", f"image:={args.node_input}", "--params-file", str(params_file)]
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def write_params_file(path: Path, params: dict) -> Path:
    """A ROS 2 params file giving `params` to every node (`/**`) it is passed to."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}, default_flow_style=False))
    return path


def exited(child: subprocess.Popen | None) -> str | None:
    """Why a spawned child no longer runs ('exited with code 3'), or None while it runs."""
    if child is None or child.poll() is None:
        return None
    code = child.returncode
    return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
