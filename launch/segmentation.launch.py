"""BEVANet segmentation: cameras in, masks out, optionally watched in RViz.

    ros2 launch bevanet_ros segmentation.launch.py variant:=bevanet_s \
        camera_topics:=/camera/image_raw rviz:=true
    ros2 launch bevanet_ros segmentation.launch.py variant:=bevanet \
        weights:=/models/bevanet_city.safetensors backend:=tensorrt device:=cuda \
        camera_topics:=/front/image_raw,/rear/image_raw namespace:=perception

Parameters come from config/segmentation.yaml (found with FindPackageShare), then what differs
per variant, then the non-empty launch arguments. The resolution logic lives in
bevanet_ros.launch_plan (plain Python, tested without ROS).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from bevanet_ros.launch_plan import (
    LAUNCH_ARGUMENTS,
    NODE_EXECUTABLE,
    PACKAGE,
    plan_launch,
)
from launch import LaunchDescription


def _launch_setup(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ARGUMENTS}
    share = FindPackageShare(PACKAGE).perform(context)
    plan = plan_launch(values, share)
    actions = [
        Node(
            package=PACKAGE,
            executable=NODE_EXECUTABLE,
            name=plan.node_name,
            namespace=plan.namespace,
            parameters=[plan.params_file, plan.variant_parameters, plan.overrides],
            ros_arguments=["--log-level", plan.log_level],
            output="screen",
            emulate_tty=True,
        )
    ]
    if plan.rviz:
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", plan.rviz_config],
                parameters=[{"use_sim_time": plan.overrides["use_sim_time"]}],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
