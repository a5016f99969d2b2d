"""Managed (lifecycle) variant of the segmentation node.

    python -m bevanet_ros.lifecycle_segmentation_node --ros-args -p weights:=model.safetensors
    ros2 lifecycle set /segmentation configure   # loads the model, creates the publishers
    ros2 lifecycle set /segmentation activate    # subscribes the cameras, starts inference
    ros2 lifecycle set /segmentation deactivate  # unsubscribes, stops the worker
    ros2 lifecycle set /segmentation cleanup     # frees the model (and GPU memory)

Parameters are declared in the constructor. Those that need a model reload may be changed only
while the node is unconfigured; they take effect at the next configure. A failed configure
leaves the node unconfigured with nothing half-built.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from bevanet_ros.params import NodeSettings, ParameterError

from .ros_params import ParameterBinder
from .segmentation_node import DEFAULT_NODE_NAME, run_node


class LifecycleSegmentationNode(LifecycleNode):
    """configure: load model + publishers; activate: subscriptions + worker; deactivate: stop;
    cleanup: free; shutdown: everything."""

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs) -> None:
        # the pipeline (and torch) is imported when a node is built, so that --help is quick
        from .pipeline import SegmentationPipeline

        super().__init__(node_name, **kwargs)
        self._configured = False
        self.pipeline = SegmentationPipeline(self, managed=True)
        self.params = ParameterBinder(
            self,
            managed=True,
            reload_allowed=lambda: not self._configured,
            on_change=self.pipeline.update_settings,
        )

    @property
    def settings(self) -> NodeSettings | None:
        return self.pipeline.settings

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from .pipeline import ModelLoadError

        try:
            settings = self.params.resolve()
            self.pipeline.load_model(settings)
            self.pipeline.create_outputs()
        except (ParameterError, ModelLoadError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.pipeline.shutdown()
            self.params.settings = None
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers first
        if ret != TransitionCallbackReturn.SUCCESS:
            return ret
        self.pipeline.publish_label_info()
        self.pipeline.create_inputs()
        self.pipeline.start()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.stop()
        self.pipeline.destroy_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.shutdown()
        self._configured = False
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.shutdown()
        self._configured = False
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.shutdown()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self.pipeline.shutdown()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Runs the lifecycle node (unconfigured at start, driven by `ros2 lifecycle set`)."""
    return run_node(LifecycleSegmentationNode, args, lifecycle=True)


if __name__ == "__main__":
    sys.exit(main())
