"""Replays a bag into the segmentation node, on the bag's clock (use_sim_time), optionally in RViz.

    ros2 launch bevanet_ros bag_replay.launch.py bag:=bags/solid_white_right
    ros2 launch bevanet_ros bag_replay.launch.py bag:=my_bag \
        camera_topics:=/front/image_raw rate:=0.5 loop:=true player:=rosbags rviz:=false

The camera topics and transport come from the bag (its Image and CompressedImage topics) unless
given. The player is `ros2 bag play --clock` where rosbag2 is installed, else this package's
`bag_player` (rosbags); either starts once the node has subscribed, so no frame goes to nobody.
Everything else is segmentation.launch.py with use_sim_time:=true; every node parameter is an
argument here too (num_threads:=1, foxglove_port:=8765, ...), passed on to it. When the player
has played the bag (and the node has had DRAIN_S seconds for the last frames), or when any
process exits, the launch ends.
"""

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetLaunchConfiguration,
    TimerAction,
)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from bevanet_core.bags.replay_plan import (
    CHECKED,
    DRAIN_S,
    ROSBAGS_PLAYER,
    plan_replay,
    refuse_undeclared,
)
from bevanet_core.serving.launch_plan import LAUNCH_ARGUMENTS, PACKAGE, PARAM_ARGUMENTS
from launch import LaunchDescription

ARGUMENTS = (
    ("bag", "", "Bag to replay (rosbag2 folder with metadata.yaml, or a ROS 1 .bag); required"),
    ("variant", "bevanet_s", "Network variant (see segmentation.launch.py)"),
    ("weights", "", "Weights file; empty = the variant YAML's value (shipped CamVid model for bevanet_s)"),
    ("backend", "", "Inference backend; empty keeps the YAML's value"),
    ("input_size", "", "Network input WxH (e.g. 640x480); empty keeps the YAML's value"),
    (
        "camera_topics",
        "",
        "Camera topics in the bag, comma separated (without /compressed); empty = every image topic of the bag",
    ),
    ("input_transport", "", "raw or compressed; empty = how the bag recorded the camera topics"),
    ("rate", "1.0", "Playback rate factor"),
    ("loop", "false", "Replay the bag in a loop"),
    ("player", "auto", "auto (ros2 bag play where rosbag2 is installed, else rosbags), ros2, or rosbags"),
    (
        "rviz",
        "auto",
        "RViz with a view of the replay's topics (see segmentation.launch.py): auto or true (where rviz2 "
        "is absent, a note with the view's path), or false",
    ),
    ("composable", "false", "true: run the node in a component container (see segmentation.launch.py)"),
    ("log_level", "info", "Node log level (debug, info, warn, error)"),
)
# every other node parameter, declared and described as segmentation.launch.py does, passed on to it
PASSED = tuple(a for a in LAUNCH_ARGUMENTS if a[0] in PARAM_ARGUMENTS and a[0] not in {n for n, _, _ in ARGUMENTS})
NAMES = [name for name, _, _ in ARGUMENTS + PASSED]


def _player_done(event, context):
    if context.is_shutdown:
        return None
    if event.returncode == 0:
        return [
            LogInfo(msg=f"the bag has been played; ending the launch in {DRAIN_S:g} s"),
            TimerAction(period=DRAIN_S, actions=[EmitEvent(event=Shutdown(reason="the bag has been played"))]),
        ]
    return [EmitEvent(event=Shutdown(reason=f"the bag player failed (exit {event.returncode})"))]


def _launch_setup(context, *args, **kwargs):
    refuse_undeclared(context.argv, NAMES, "bag_replay.launch.py")
    values = {name: LaunchConfiguration(name).perform(context) for name in NAMES}
    replay = plan_replay(values)
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "segmentation.launch.py"])
        ),
        launch_arguments={
            "variant": values["variant"],
            "weights": values["weights"],
            "backend": values["backend"],
            "input_size": values["input_size"],
            "camera_topics": replay.camera_topics,
            "input_transport": replay.input_transport,
            "rviz": values["rviz"],
            "composable": values["composable"],
            "log_level": values["log_level"],
            "use_sim_time": "true",
            **{name: values[name] for name, _, _ in PASSED},
        }.items(),
    )
    if replay.player == "ros2":
        player = ExecuteProcess(cmd=list(replay.command), name="ros2_bag_play", output="screen")
    else:
        player = Node(package=PACKAGE, executable=ROSBAGS_PLAYER, arguments=list(replay.command), output="screen")
    started = []

    def start_player(event):
        # the node logs "camera '<name>': <topic> (...) -> <mask topic>" once it has subscribed
        if not started and b"camera '" in event.text and b" -> " in event.text:
            started.append(True)
            return [player]
        return None

    note = f"{replay.frames} frames on {replay.camera_topics} ({replay.input_transport}) through {replay.player}"
    return [
        LogInfo(msg=f"replaying {values['bag']}: {note}, once the node has subscribed"),
        SetLaunchConfiguration(CHECKED, "true"),
        RegisterEventHandler(OnProcessIO(on_stdout=start_player, on_stderr=start_player)),
        RegisterEventHandler(OnProcessExit(target_action=player, on_exit=_player_done)),
        segmentation,
    ]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS + PASSED
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
