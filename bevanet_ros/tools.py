"""`bevanet-demo` and `bevanet-bag-eval`: the core tools plus their DDS modes.

`--through-node` sends the frames to a running segmentation node (`bag_client.NodeClient`);
`bevanet-demo --spawn-node` first starts one as deployed, in its own process. Without these
options the tools run the same in-process runtime as `bevanet_core.cli`, and rclpy is never
imported, so both console scripts also work where ROS is absent.
"""

from __future__ import annotations

import argparse
import functools
import sys

from bevanet_core.bags.evaluate import FrameProcessor
from bevanet_core.cli import bag_eval, demo
from bevanet_core.cli.node_process import spawn_node

NODE_COMMAND = [sys.executable, "-m", "bevanet_ros.segmentation_node"]


def connect(args: argparse.Namespace, local: FrameProcessor) -> FrameProcessor:
    """A DDS client of the node named by --node-input/--node-mask. Raises ImportError without
    rclpy, TimeoutError when no node answers and ChildProcessError when the node this tool
    spawned (`args.node_process`) dies before it answers."""
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
        child=getattr(args, "node_process", None),
    )


def demo_main(argv: list[str] | None = None) -> int:
    """Console script `bevanet-demo`."""
    return demo.main(argv, node_client=connect, spawn_node=functools.partial(spawn_node, NODE_COMMAND))


def bag_eval_main(argv: list[str] | None = None) -> int:
    """Console script `bevanet-bag-eval`."""
    return bag_eval.main(argv, node_client=connect)
