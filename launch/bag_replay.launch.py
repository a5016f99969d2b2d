"""Replays a bag into the segmentation node with RViz (ros2 bag play --clock, use_sim_time).

    ros2 launch bevanet_ros bag_replay.launch.py bag:=bags/driving_sample variant:=bevanet_s
    ros2 launch bevanet_ros bag_replay.launch.py bag:=my_bag \
        camera_topics:=/front/image_raw rate:=0.5 loop:=true

`ros2 bag play` is started as a process because it is the tool for this job; everything else is
segmentation.launch.py with use_sim_time:=true and rviz:=true.
"""

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from bevanet_ros.launch_plan import PACKAGE, bag_play_command
from launch import LaunchDescription

ARGUMENTS = (
    ("bag", "", "Bag to replay (folder or .mcap/.db3 file); required"),
    ("variant", "bevanet_s", "Network variant (see segmentation.launch.py)"),
    (
        "weights",
        "",
        "Weights file; empty = the variant YAML's value (shipped CamVid model for bevanet_s)",
    ),
    ("backend", "", "Inference backend; empty keeps the YAML's value"),
    ("input_size", "", "Network input WxH (e.g. 640x480); empty keeps the YAML's value"),
    ("camera_topics", "/camera/image_raw", "Image topics in the bag, comma separated"),
    ("rate", "1.0", "Playback rate factor"),
    ("loop", "false", "Replay the bag in a loop"),
    ("rviz", "true", "Start RViz with config/segmentation.rviz"),
)


def _bag_play(context, *args, **kwargs):
    cmd = bag_play_command(
        LaunchConfiguration("bag").perform(context),
        LaunchConfiguration("rate").perform(context),
        LaunchConfiguration("loop").perform(context),
    )
    return [ExecuteProcess(cmd=cmd, output="screen")]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "segmentation.launch.py"])
        ),
        launch_arguments={
            "variant": LaunchConfiguration("variant"),
            "weights": LaunchConfiguration("weights"),
            "backend": LaunchConfiguration("backend"),
            "input_size": LaunchConfiguration("input_size"),
            "camera_topics": LaunchConfiguration("camera_topics"),
            "rviz": LaunchConfiguration("rviz"),
            "use_sim_time": "true",
        }.items(),
    )
    return LaunchDescription(declared + [segmentation, OpaqueFunction(function=_bag_play)])
