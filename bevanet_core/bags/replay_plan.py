"""What `bag_replay.launch.py` computes, in plain Python (no `launch` import), so it is tested anywhere.

The camera topics and the transport come from the bag's own topics unless given; the player is
`ros2 bag play` where rosbag2 is installed and `bag_player` (rosbags) otherwise; both publish
/clock for use_sim_time and play only the image topics the node subscribes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence

from ..serving.launch_plan import parse_bool, parse_camera_topics
from .player import COMPRESSED_SUFFIX, BagPlayError, plan_playback

PLAYERS = ("auto", "ros2", "rosbags")
ROSBAGS_PLAYER = "bag_player"  # console script of this package (lib/bevanet_ros/bag_player)
# after the player's last message, how long the node gets to segment the frames in flight
# before the launch ends
DRAIN_S = 3.0
# launch configuration an including launch file sets once it has checked the user's arguments
CHECKED = "_bevanet_arguments_checked"


def ros2_bag_available() -> bool:
    """`ros2 bag` works here: the `ros2` command and rosbag2's Python verbs are installed."""
    return shutil.which("ros2") is not None and importlib.util.find_spec("ros2bag") is not None


def package_installed(package: str) -> bool:
    """`package` is in the ament index (AMENT_PREFIX_PATH), as launch_ros' Node looks it up."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and os.path.isfile(
            os.path.join(prefix, "share", "ament_index", "resource_index", "packages", package)
        ):
            return True
    return False


def refuse_undeclared(argv: Sequence[str], declared: Sequence[str], launch_file: str) -> None:
    """Raises ValueError naming every NAME:=VALUE of `argv` whose NAME `launch_file` does not
    declare (`ros2 launch` would otherwise ignore a typo and run with the default)."""
    names = [item.partition(":=")[0] for item in argv if ":=" in item]
    unknown = sorted({n for n in names if n not in declared})
    if unknown:
        raise ValueError(
            f"{launch_file} declares no argument "
            + ", ".join(repr(u) for u in unknown)
            + "; it declares: "
            + ", ".join(declared)
        )


@dataclasses.dataclass(frozen=True)
class ReplayPlan:
    """The node's inputs and the player to run."""

    camera_topics: str  # comma separated, as segmentation.launch.py takes them
    input_transport: str
    player: str  # 'ros2' or 'rosbags'
    command: tuple[str, ...]  # for 'ros2': the whole command line; for 'rosbags': the arguments
    frames: int  # image messages the player publishes in one pass


def plan_replay(args: Mapping[str, str], ros2_bag: bool | None = None) -> ReplayPlan:
    """Resolves bag, camera_topics, input_transport, rate, loop and player; raises ValueError
    (or BagPlayError) with the argument's name on bad values."""
    bag = str(args.get("bag", "")).strip()
    if not bag:
        raise ValueError("launch argument 'bag' is required: the bag folder or file to replay")
    try:
        rate = float(args.get("rate", "1.0"))
    except ValueError:
        raise ValueError(f"launch argument 'rate' must be a number, got {args.get('rate')!r}") from None
    if not rate > 0:
        raise ValueError(f"launch argument 'rate' must be > 0, got {args.get('rate')!r}")
    loop = parse_bool("loop", args.get("loop", "false"))
    player = str(args.get("player", "auto")).strip()
    if player not in PLAYERS:
        raise ValueError(f"launch argument 'player' is {player!r}; expected one of: {', '.join(PLAYERS)}")
    transport = str(args.get("input_transport", "")).strip()
    if transport not in ("", "raw", "compressed"):
        raise ValueError(f"launch argument 'input_transport' is {transport!r}; expected raw or compressed")

    found = plan_playback(bag)  # every image topic; BagPlayError names the problem
    given = str(args.get("camera_topics", "")).strip()
    if given:
        cameras = parse_camera_topics(given)
        transport = transport or _transport_of(found.topics, cameras, bag)
    else:
        transports = sorted({t.transport for t in found.topics})
        if not transport:
            if len(transports) > 1:
                raise BagPlayError(
                    f"bag {bag} has raw and compressed image topics; pick with input_transport:= and camera_topics:="
                )
            transport = transports[0]
        cameras = [t.camera_topic for t in found.topics if t.transport == transport]
        if not cameras:
            raise BagPlayError(f"bag {bag} has no {transport} image topic; its image topics: {_listing(found.topics)}")
    topics = [c + COMPRESSED_SUFFIX if transport == "compressed" else c for c in cameras]
    played = plan_playback(bag, topics)  # checks each topic is in the bag and is an image topic
    if ros2_bag is None:
        ros2_bag = ros2_bag_available()
    if player == "ros2" and not ros2_bag:
        raise ValueError(
            "launch argument player:=ros2 needs `ros2 bag play` (rosbag2), which is not installed here; "
            "use player:=rosbags (or auto)"
        )
    options = ["--clock", "--rate", repr(rate)] + (["--loop"] if loop else []) + ["--topics", *topics]
    if player == "ros2" or (player == "auto" and ros2_bag):
        return ReplayPlan(",".join(cameras), transport, "ros2", ("ros2", "bag", "play", bag, *options), played.frames)
    return ReplayPlan(",".join(cameras), transport, "rosbags", (bag, *options), played.frames)


def _transport_of(topics, cameras: list[str], bag: str) -> str:
    """The transport under which the bag records `cameras`: raw where '<camera>' is an Image
    topic, compressed where '<camera>/compressed' is a CompressedImage one."""
    raw = {t.topic for t in topics if t.transport == "raw"}
    compressed = {t.topic for t in topics if t.transport == "compressed"}
    if all(c in raw for c in cameras):
        return "raw"
    if all(c + COMPRESSED_SUFFIX in compressed for c in cameras):
        return "compressed"
    raise BagPlayError(
        f"launch argument 'camera_topics' ({', '.join(cameras)}) does not name image topics of bag {bag} "
        f"(as <topic> for Image or <topic>/compressed for CompressedImage); its image topics: {_listing(topics)}"
    )


def _listing(topics) -> str:
    return ", ".join(f"{t.topic} ({t.msgtype})" for t in topics)
