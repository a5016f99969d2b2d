"""`ros2 run bevanet_ros bag_player BAG`: bag replay where `ros2 bag play` (rosbag2) is absent.

    ros2 run bevanet_ros bag_player bags/solid_white_right --clock --rate 0.5
    ros2 run bevanet_ros bag_player my_bag --topics /front/image_raw --remap /front/image_raw:=/camera/image_raw --loop

Publishes the bag's Image and CompressedImage topics (`bevanet_core.bags.player`) at their
recorded timing, with /clock for use_sim_time, once every played topic has a subscriber.
"""

from __future__ import annotations

import sys
import time

from bevanet_core.bags.player import (
    BagPlayError,
    build_parser,
    check_arguments,
    parse_remaps,
    plan_playback,
    schedule,
)
from bevanet_core.serving.shutdown import ShutdownSignals

PROG = "bag_player"


def _split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return argv[:i], argv[i:]
    return argv, []


def main(args: list[str] | None = None) -> int:
    """Console script `bag_player`; exit 0 at the end of the bag or on Ctrl-C, 2 on a bad bag."""
    argv = list(sys.argv if args is None else args)
    own, ros_args = _split_ros_args(argv[1:])
    opts = build_parser(PROG).parse_args(own)
    try:
        check_arguments(opts)
        plan = plan_playback(opts.bag, opts.topics, parse_remaps(opts.remap))
    except BagPlayError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return play(plan, opts, [argv[0], *ros_args])


def play(plan, opts, rcl_args: list[str]) -> int:
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
    signals = ShutdownSignals()
    node = None
    try:
        rclpy.init(args=rcl_args, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("rosbags_player")
        log = node.get_logger()
        pubs = {t.published_as: node.create_publisher(types[t.msgtype], t.published_as, qos) for t in plan.topics}
        clock_pub = node.create_publisher(Clock, "/clock", 10) if opts.clock > 0 else None
        signals.running()
        played = ", ".join(f"{t.topic} ({t.count} {t.msgtype.rsplit('/', 1)[1]})" for t in plan.topics)
        if opts.wait_for_subscribers != 0:
            limit = None if opts.wait_for_subscribers < 0 else opts.wait_for_subscribers
            log.info(f"waiting for a subscriber on {', '.join(pubs)}")
            t0 = time.monotonic()
            while not all(p.get_subscription_count() > 0 for p in pubs.values()):
                if signals.wait(0.05):
                    return 0
                if limit is not None and time.monotonic() - t0 > limit:
                    missing = [name for name, p in pubs.items() if p.get_subscription_count() == 0]
                    log.error(f"nothing subscribed {', '.join(missing)} within {limit:g} s; not playing")
                    return 1
        log.info(f"playing {plan.bag}: {played} at rate {opts.rate:g}" + (", looping" if opts.loop else ""))
        while True:
            sent = _play_once(plan, opts, pubs, clock_pub, Clock, signals)
            if signals.requested:
                break
            log.info(f"end of {plan.bag}: {sent} messages published")
            if not opts.loop:
                break
    except KeyboardInterrupt:
        pass
    except BagPlayError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    finally:
        signals.stopping()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        signals.ignore_until_exit()
    return 0


def _play_once(plan, opts, pubs, clock_pub, clock_type, signals) -> int:
    """One pass over the bag; returns how many messages went out (stops early on a signal)."""
    clock_period = 1.0 / opts.clock if clock_pub is not None else None
    start = time.monotonic()
    next_clock = 0.0
    sent = 0

    def publish_clock(bag_ns: int) -> None:
        msg = clock_type()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
        clock_pub.publish(msg)

    for message in schedule(plan, opts.rate):
        while True:
            now = time.monotonic() - start
            if clock_period is not None and now >= next_clock:
                publish_clock(plan.start_ns + int(now * opts.rate * 1e9))
                next_clock += clock_period
            wake = message.due if clock_period is None else min(message.due, next_clock)
            if now >= message.due:
                break
            if signals.wait(max(wake - now, 0.0)):
                return sent
        if clock_pub is not None:
            publish_clock(message.log_time)
        pubs[message.topic].publish(message.cdr)
        sent += 1
    return sent


if __name__ == "__main__":
    sys.exit(main())
