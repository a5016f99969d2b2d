"""`ros2 run bevanet_ros bag_player BAG`: bag replay where `ros2 bag play` (rosbag2) is absent.

    ros2 run bevanet_ros bag_player bags/solid_white_right --clock --rate 0.5
    ros2 run bevanet_ros bag_player my_bag --topics /front/image_raw --remap /front/image_raw:=/camera/image_raw --loop

Publishes the bag's Image and CompressedImage topics (`bevanet_core.bags.player`) at their
recorded timing, with /clock for use_sim_time, once every played topic has a subscriber.
"""

from __future__ import annotations

import sys

from bevanet_core.bags import player

PROG = "bag_player"


def main(args: list[str] | None = None) -> int:
    """Console script `bag_player`: exit 0 at the end of the bag or on Ctrl-C, 1 when nothing
    subscribed in time, 2 for a bag it cannot play (one line)."""
    argv = list(sys.argv if args is None else args)
    own, ros_args = player.split_ros_args(argv[1:])
    opts = player.build_parser(PROG).parse_args(own)
    try:
        player.check_arguments(opts)
        plan = player.plan_playback(opts.bag, opts.topics, player.parse_remaps(opts.remap))
        return _serve(plan, opts, [argv[0], *ros_args])
    except player.BagPlayError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


def _serve(plan: player.PlayPlan, opts, rcl_args: list[str]) -> int:
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image

    from .spin import serve

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
    pubs = {}

    def build(executor) -> Node:
        node = Node("rosbags_player")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for t in plan.topics:
            pubs[t.published_as] = node.create_publisher(types[t.msgtype], t.published_as, qos)
        if opts.clock > 0:
            pubs["/clock"] = node.create_publisher(Clock, "/clock", 10)
        return node

    def run(node: Node, signals) -> int:
        images = {name: pub for name, pub in pubs.items() if name != "/clock"}

        def clock(bag_ns: int) -> None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
            pubs["/clock"].publish(msg)

        def publish(message: player.Scheduled) -> None:
            images[message.topic].publish(message.cdr)  # the recorded CDR bytes as they are

        def log(level: str, text: str) -> None:
            getattr(node.get_logger(), level)(text)

        counts = {name: pub.get_subscription_count for name, pub in images.items()}
        return player.play(plan, opts, publish, clock if "/clock" in pubs else None, counts, signals.event, log)

    return serve(build, rcl_args, PROG, run=run)


if __name__ == "__main__":
    sys.exit(main())
