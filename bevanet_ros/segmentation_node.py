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

import sys

from rclpy.node import Node

from bevanet_core.serving.node_cli import help_text
from bevanet_core.serving.params import NodeSettings

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


def run_node(node_class, args: list[str] | None = None, lifecycle: bool = False) -> int:
    """Runs one node until Ctrl-C or SIGTERM (exit 0; a lifecycle node passes through its shutdown
    transition) or until it cannot start (exit 1, the reason logged as one line). `--help`
    prints the usage and the parameters and returns 0 without starting anything."""
    text = help_text(sys.argv if args is None else args, DEFAULT_NODE_NAME, lifecycle)
    if text is not None:
        sys.stdout.write(text)
        return 0
    from .spin import serve

    return serve(lambda executor: node_class(), args, DEFAULT_NODE_NAME)


def main(args: list[str] | None = None) -> int:
    """Console script `segmentation_node` (ros2 run bevanet_ros segmentation_node)."""
    return run_node(SegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
