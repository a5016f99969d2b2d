"""BEVANet semantic segmentation node: camera images in, label masks out.

    ros2 run bevanet_ros segmentation_node --ros-args -r image:=/camera/image_raw
    python -m bevanet_ros.segmentation_node --ros-args -p weights:=model.safetensors

Subscribes `image` (one topic per entry of `input_topics`), publishes `~/mask` (mono8 class ids,
255 unlabeled, input resolution, input header), `~/color_mask` and `~/overlay` (rgb8, only
while subscribed), `~/confidence` (mono8, optional), latched `~/label_info` and
`~/label_info_json`, and a status on `/diagnostics`. The class takes the usual Node keyword
arguments, so several instances can share one process and executor.
"""

from __future__ import annotations

import os
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from bevanet_ros.params import NodeSettings, ParameterError, node_help

from .ros_params import ParameterBinder

DEFAULT_NODE_NAME = "segmentation"


class SegmentationNode(Node):
    """Loads the model and starts serving in the constructor; raises (leaving nothing behind)
    when a parameter is bad or the model cannot be loaded."""

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs) -> None:
        # the pipeline (and torch) is imported when a node is built, so that --help is quick
        from .pipeline import SegmentationPipeline

        super().__init__(node_name, **kwargs)
        self.pipeline = SegmentationPipeline(self, managed=False)
        try:
            self.params = ParameterBinder(self, managed=False, on_change=self.pipeline.update_settings)
            settings = self.params.resolve()
            self.pipeline.load_model(settings)
            self.pipeline.create_outputs()
            self.pipeline.create_inputs()
            self.pipeline.publish_label_info()
            self.pipeline.start()
        except BaseException:
            self.pipeline.shutdown()
            super().destroy_node()
            raise

    @property
    def settings(self) -> NodeSettings | None:
        return self.pipeline.settings

    def destroy_node(self) -> None:
        self.pipeline.shutdown()
        super().destroy_node()


def wants_help(args: list[str] | None = None) -> bool:
    """-h/--help among the arguments before --ros-args (what follows belongs to ROS)."""
    argv = list(sys.argv[1:] if args is None else args[1:])
    if "--ros-args" in argv:
        argv = argv[: argv.index("--ros-args")]
    return any(a in ("-h", "--help") for a in argv)


def run_node(node_factory, args: list[str] | None = None, lifecycle: bool = False) -> int:
    """rclpy.init, build, spin until Ctrl-C or shutdown, tear down; returns the exit code.
    Start-up errors (bad parameter, missing weights) are logged as one clear line.
    `--help` prints the usage and the parameters and returns 0 without starting anything."""
    if wants_help(args):
        prog = os.path.basename(sys.argv[0]) if args is None else os.path.basename(args[0])
        if prog in ("__main__.py", "segmentation_node.py", "lifecycle_segmentation_node.py", ""):
            module = "lifecycle_segmentation_node" if lifecycle else "segmentation_node"
            prog = f"python -m bevanet_ros.{module}"
        sys.stdout.write(node_help(prog, DEFAULT_NODE_NAME, lifecycle=lifecycle))
        return 0
    from .pipeline import ModelLoadError

    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(DEFAULT_NODE_NAME)
    node = None
    code = 0
    try:
        node = node_factory()
        # callbacks only fill latest-frame slots; the inference worker has its own thread
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (
        ParameterError,
        ModelLoadError,
        rclpy.exceptions.InvalidParameterValueException,
        rclpy.exceptions.InvalidParameterTypeException,
    ) as exc:
        logger.error(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def main(args: list[str] | None = None) -> int:
    """Console script `segmentation_node` (ros2 run bevanet_ros segmentation_node)."""
    return run_node(SegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
