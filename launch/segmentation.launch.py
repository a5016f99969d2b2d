"""BEVANet segmentation: cameras in, masks out, optionally watched in RViz.

    ros2 launch bevanet_ros segmentation.launch.py variant:=bevanet_s \
        camera_topics:=/camera/image_raw rviz:=auto
    ros2 launch bevanet_ros segmentation.launch.py variant:=bevanet \
        weights:=/models/bevanet_city.safetensors backend:=tensorrt device:=cuda \
        camera_topics:=/front/image_raw,/rear/image_raw namespace:=perception
    ros2 launch bevanet_ros segmentation.launch.py composable:=true        # in a component container
    ros2 launch bevanet_ros segmentation.launch.py container:=/ComponentManager   # into a running one

Parameters come from config/segmentation.yaml (found with FindPackageShare), then what differs
per variant, then the non-empty launch arguments. The resolution logic lives in
bevanet_core.serving.launch_plan (plain Python, tested without ROS). An argument this file does
not declare stops the launch with its name; when the node (or RViz) exits, the launch ends.
rviz:=true writes an RViz view of the node's topics as these arguments name them
(bevanet_core.serving.rviz_config) and opens it.
"""

from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import ComposableNodeContainer, LoadComposableNodes, Node
from launch_ros.descriptions import ComposableNode
from launch_ros.substitutions import FindPackageShare

from bevanet_core.bags.replay_plan import CHECKED, package_installed, refuse_undeclared
from bevanet_core.serving.launch_plan import (
    COMPONENT,
    CONTAINER_EXECUTABLE,
    LAUNCH_ARGUMENTS,
    NODE_EXECUTABLE,
    PACKAGE,
    plan_launch,
)
from bevanet_core.serving.rviz_config import render, write
from launch import LaunchDescription

NAMES = [name for name, _, _ in LAUNCH_ARGUMENTS]


def _ends_launch(reason: str):
    """on_exit of every process: the launch ends with it (once; launch_ros refuses a second
    Shutdown after it has loaded components)."""

    def on_exit(event, context):
        return None if context.is_shutdown else [EmitEvent(event=Shutdown(reason=reason))]

    return on_exit


def _segmentation(plan) -> list:
    parameters = [plan.params_file, plan.variant_parameters, plan.overrides]
    if not (plan.composable or plan.container):
        return [
            Node(
                package=PACKAGE,
                executable=NODE_EXECUTABLE,
                name=plan.node_name,
                namespace=plan.namespace,
                parameters=parameters,
                ros_arguments=["--log-level", plan.log_level],
                output="screen",
                emulate_tty=True,
                on_exit=_ends_launch(f"{NODE_EXECUTABLE} exited"),
            )
        ]
    component = ComposableNode(
        package=PACKAGE,
        plugin=COMPONENT,
        name=plan.node_name,
        namespace=plan.namespace,
        parameters=parameters,
    )
    if plan.container:
        return [LoadComposableNodes(target_container=plan.container, composable_node_descriptions=[component])]
    return [
        ComposableNodeContainer(
            package=PACKAGE,
            executable=CONTAINER_EXECUTABLE,
            name=plan.node_name + "_container",
            namespace=plan.namespace,
            composable_node_descriptions=[component],
            ros_arguments=["--log-level", plan.log_level],
            output="screen",
            emulate_tty=True,
            on_exit=_ends_launch(f"{CONTAINER_EXECUTABLE} exited"),
        )
    ]


def _launch_setup(context, *args, **kwargs):
    if context.launch_configurations.get(CHECKED) != "true":
        refuse_undeclared(context.argv, NAMES, "segmentation.launch.py")
    values = {name: LaunchConfiguration(name).perform(context) for name in NAMES}
    share = FindPackageShare(PACKAGE).perform(context)
    plan = plan_launch(values, share)
    actions = _segmentation(plan)
    if plan.rviz:  # the view of this launch's own topics, written before the node starts
        write(plan.rviz_config, render(plan.settings, plan.namespace, plan.node_name))
    if plan.rviz and package_installed("rviz2"):
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", plan.rviz_config],
                parameters=[{"use_sim_time": plan.overrides["use_sim_time"]}],
                output="screen",
                on_exit=_ends_launch("rviz2 exited"),
            )
        )
    elif plan.rviz:
        actions.append(
            LogInfo(
                msg="rviz2 is not installed: no RViz window (the node runs as without rviz:=); the RViz "
                f"view of this launch's topics is {plan.rviz_config} (rviz2 -d {plan.rviz_config})"
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
