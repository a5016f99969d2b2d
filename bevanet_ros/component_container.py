"""A component container for Python nodes: `ros2 run bevanet_ros component_container`.

    ros2 run bevanet_ros component_container                     # node /ComponentManager
    ros2 component load /ComponentManager bevanet_ros bevanet_ros::SegmentationNode -r image:=/camera/image_raw
    ros2 component list
    ros2 component unload /ComponentManager 1

It serves composition_interfaces' `~/_container/load_node`, `unload_node` and `list_nodes` as
rclcpp_components' container does, so `ros2 component` and launch_ros' ComposableNodeContainer
and LoadComposableNodes drive it unchanged, and spins the nodes it loads in one executor. No
C++ components, and no intra-process (zero-copy) transport between the nodes.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter

from bevanet_core.serving.components import ComponentLoadError, check_extra_arguments, check_plugin, node_arguments
from bevanet_core.serving.node_cli import wants_help

DEFAULT_NAME = "ComponentManager"  # rclcpp_components' default, so commands carry over
# plugin name -> (module, class)
COMPONENTS = {
    "bevanet_ros::SegmentationNode": ("bevanet_ros.segmentation_node", "SegmentationNode"),
    "bevanet_ros::LifecycleSegmentationNode": ("bevanet_ros.lifecycle_segmentation_node", "LifecycleSegmentationNode"),
}


class ComponentContainer(Node):
    """Loads, lists and unloads component nodes; every node it holds spins in `executor`."""

    def __init__(self, executor: Executor, node_name: str = DEFAULT_NAME, **kwargs: Any) -> None:
        # composition_interfaces comes with ROS 2 (or ../shared/ros-src), not with the PyPI wheels
        from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode

        super().__init__(node_name, **kwargs)
        self._executor = executor
        self.components: dict[int, Node] = {}
        self._next_id = 1
        self.create_service(LoadNode, "~/_container/load_node", self._on_load)
        self.create_service(UnloadNode, "~/_container/unload_node", self._on_unload)
        self.create_service(ListNodes, "~/_container/list_nodes", self._on_list)

    def load(self, request: Any) -> tuple[int, Node]:
        """Builds the requested node and adds it to the executor. Raises ComponentLoadError, or
        the node's own error when it cannot start (bad parameter, missing model)."""
        check_plugin(request.package_name, request.plugin_name, list(COMPONENTS))
        module, name = COMPONENTS[request.plugin_name]
        extras = [(p.name, Parameter.from_parameter_msg(p).value) for p in request.extra_arguments]
        for warning in check_extra_arguments(extras):
            self.get_logger().warning(f"{request.plugin_name}: {warning}")
        cls = getattr(importlib.import_module(module), name)
        kwargs: dict[str, Any] = {
            "cli_args": node_arguments(request.remap_rules, int(request.log_level)),
            "use_global_arguments": False,
            "parameter_overrides": [Parameter.from_parameter_msg(p) for p in request.parameters],
            "context": self.context,
        }
        if request.node_namespace:
            kwargs["namespace"] = request.node_namespace
        node = cls(request.node_name, **kwargs) if request.node_name else cls(**kwargs)
        unique_id, self._next_id = self._next_id, self._next_id + 1
        self.components[unique_id] = node
        self._executor.add_node(node)
        return unique_id, node

    def unload(self, unique_id: int) -> None:
        """Shuts the node down (a lifecycle node through its shutdown transition) and destroys
        it. Raises KeyError for an id this container does not hold."""
        from .spin import finish

        node = self.components.pop(unique_id)
        self._executor.remove_node(node)
        finish(node)

    def _on_load(self, request: Any, response: Any) -> Any:
        from .spin import startup_errors

        try:
            response.unique_id, node = self.load(request)
        except (ComponentLoadError, *startup_errors()) as exc:
            response.success, response.error_message = False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the caller gets the reason, the container stays up
            response.success, response.error_message = False, f"{type(exc).__name__}: {exc}"
        else:
            response.success = True
            response.full_node_name = node.get_fully_qualified_name()
            self.get_logger().info(
                f"loaded {request.plugin_name} as {response.full_node_name} (id {response.unique_id})"
            )
            return response
        self.get_logger().error(f"cannot load {request.plugin_name}: {response.error_message}")
        return response

    def _on_unload(self, request: Any, response: Any) -> Any:
        if request.unique_id not in self.components:
            response.success = False
            response.error_message = f"no component with id {request.unique_id} (loaded: {sorted(self.components)})"
            return response
        name = self.components[request.unique_id].get_fully_qualified_name()
        self.unload(request.unique_id)
        self.get_logger().info(f"unloaded {name} (id {request.unique_id})")
        response.success = True
        return response

    def _on_list(self, request: Any, response: Any) -> Any:
        response.unique_ids = list(self.components)
        response.full_node_names = [node.get_fully_qualified_name() for node in self.components.values()]
        return response

    def destroy_node(self) -> None:
        for unique_id in list(self.components):
            self.unload(unique_id)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script `component_container` (ros2 run bevanet_ros component_container)."""
    from .spin import serve

    if wants_help(sys.argv if args is None else args):
        sys.stdout.write(__doc__ + "\ncomponents: " + ", ".join(COMPONENTS) + "\n")
        return 0
    return serve(lambda executor: ComponentContainer(executor), args, DEFAULT_NAME)


if __name__ == "__main__":
    sys.exit(main())
