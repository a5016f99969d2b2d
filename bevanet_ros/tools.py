"""`bevanet-demo` and `bevanet-bag-eval`: the core tools plus their DDS modes.

`--through-node` sends the frames to a running segmentation node (`bag_client.NodeClient`);
`bevanet-demo --spawn-node` first starts one as deployed, in its own process. Without these
options the tools run the same in-process runtime as `bevanet_core.cli`, and rclpy is never
imported, so both console scripts also work where ROS is absent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bevanet_core.bags.evaluate import FrameProcessor
from bevanet_core.cli import bag_eval, demo
from bevanet_core.options import parse_size


def connect(args: argparse.Namespace, local: FrameProcessor) -> FrameProcessor:
    """A DDS client of the node named by --node-input/--node-mask. Raises ImportError without
    rclpy and TimeoutError when no node answers."""
    try:
        from .bag_client import NodeClient
    except ImportError as err:
        raise ImportError(
            f"--through-node needs rclpy and sensor_msgs ({err}); source a ROS 2 installation "
            "or install the ROS 2 wheels (scripts/bootstrap.sh)"
        ) from None
    return NodeClient(
        args.node_input,
        args.node_mask,
        local,
        timeout_s=args.node_timeout,
        discovery_s=getattr(args, "node_start_timeout", 15.0),
    )


def spawn_node(args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
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
    cmd = [sys.executable, "-m", "bevanet_ros.segmentation_node", "--ros-args"]
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


def demo_main(argv: list[str] | None = None) -> int:
    """Console script `bevanet-demo`."""
    return demo.main(argv, node_client=connect, spawn_node=spawn_node)


def bag_eval_main(argv: list[str] | None = None) -> int:
    """Console script `bevanet-bag-eval`."""
    return bag_eval.main(argv, node_client=connect)
