"""Bag replay without rosbag2: what `bevanet_ros`'s `bag_player` publishes, and when (no ROS here).

    plan = plan_playback("bags/solid_white_right")          # the bag's image topics
    for message in schedule(plan, rate=1.0):                # in recorded order and timing
        ...publish message.cdr on message.topic at message.due (seconds from the start)

A bag is opened with `rosbags` (rosbag2 MCAP or sqlite3 with its metadata.yaml, or a ROS 1
bag); only `sensor_msgs/msg/Image` and `sensor_msgs/msg/CompressedImage` topics are played, as
the CDR bytes they were recorded as (ROS 1 messages are converted). Every problem (no bag, no
metadata, no image topic, a topic of another type) is one `BagPlayError` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .reader import BagReader, BagReadError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMPRESSED_SUFFIX = "/compressed"


class BagPlayError(ValueError):
    """A bag that cannot be played; the message names the bag and the reason in one line."""


@dataclasses.dataclass(frozen=True)
class PlayTopic:
    """One image topic of the bag: where it was recorded, where it is published, its type."""

    topic: str
    published_as: str
    msgtype: str
    count: int

    @property
    def transport(self) -> str:
        """'compressed' for CompressedImage, 'raw' for Image (the node's `input_transport`)."""
        return "compressed" if self.msgtype.endswith("CompressedImage") else "raw"

    @property
    def camera_topic(self) -> str:
        """The topic the node's `input_topics` names: without '/compressed' for compressed ones."""
        name = self.published_as
        if self.transport == "compressed" and name.endswith(COMPRESSED_SUFFIX):
            return name[: -len(COMPRESSED_SUFFIX)]
        return name


@dataclasses.dataclass(frozen=True)
class PlayPlan:
    """The bag and what of it is played."""

    bag: Path
    topics: tuple[PlayTopic, ...]
    start_ns: int
    duration_ns: int

    @property
    def frames(self) -> int:
        return sum(t.count for t in self.topics)


@dataclasses.dataclass(frozen=True)
class Scheduled:
    """One message to publish `due` seconds after the start of playback."""

    topic: str
    msgtype: str
    due: float
    log_time: int
    cdr: bytes


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    """['/a:=/b'] -> {'/a': '/b'}; anything else raises BagPlayError."""
    out = {}
    for item in items:
        old, sep, new = item.partition(":=")
        if not sep or not old.startswith("/") or not new.startswith("/"):
            raise BagPlayError(f"remapping {item!r} is not /FROM:=/TO")
        out[old] = new
    return out


def plan_playback(
    bag: str | Path, topics: Sequence[str] | None = None, remaps: Mapping[str, str] | None = None
) -> PlayPlan:
    """The image topics of `bag` to play (`topics` picks some of them). Raises BagPlayError."""
    bag = Path(bag)
    if not bag.exists():
        raise BagPlayError(f"bag {bag} does not exist")
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        raise BagPlayError(f"bag {bag} has no metadata.yaml: not a rosbag2 folder (recorded to the end?)")
    try:
        with BagReader(bag) as reader:
            if reader.recovered is not None:
                raise BagPlayError(f"bag {bag} cannot be played as recorded: {reader.recovered}")
            found = dict(reader.topics)
            any_reader = reader._any
            start_ns = int(any_reader.start_time) if any_reader is not None else 0
            end_ns = int(any_reader.end_time) if any_reader is not None else start_ns
    except BagReadError as err:
        raise BagPlayError(str(err)) from None
    remaps = dict(remaps or {})
    if topics:
        chosen = []
        for name in topics:
            if name not in found:
                raise BagPlayError(f"bag {bag} has no topic {name!r}; it has: {', '.join(sorted(found))}")
            if found[name].msgtype not in IMAGE_TYPES:
                raise BagPlayError(
                    f"topic {name!r} of bag {bag} is {found[name].msgtype}; the player publishes "
                    f"{' and '.join(IMAGE_TYPES)} only"
                )
            chosen.append(name)
    else:
        chosen = sorted(name for name, info in found.items() if info.msgtype in IMAGE_TYPES)
        if not chosen:
            listing = ", ".join(f"{n} ({i.msgtype})" for n, i in sorted(found.items())) or "no topics"
            raise BagPlayError(f"bag {bag} has no image topic ({' or '.join(IMAGE_TYPES)}); it has {listing}")
    unknown = sorted(set(remaps) - set(found))
    if unknown:
        raise BagPlayError(f"remapping names {', '.join(unknown)}, which bag {bag} does not have")
    play = tuple(
        PlayTopic(name, remaps.get(name, name), found[name].msgtype, int(found[name].count or 0)) for name in chosen
    )
    return PlayPlan(bag, play, start_ns, max(end_ns - start_ns, 0))


def schedule(plan: PlayPlan, rate: float = 1.0) -> Iterator[Scheduled]:
    """The plan's messages in recorded order, each due at (log time - bag start) / rate seconds."""
    if not rate > 0:
        raise BagPlayError(f"rate must be > 0, got {rate}")
    names = {t.topic: t.published_as for t in plan.topics}
    try:
        with BagReader(plan.bag) as reader:
            for raw in reader.messages(list(names)):
                due = (raw.log_time - plan.start_ns) / 1e9 / rate
                yield Scheduled(names[raw.topic], raw.msgtype, max(due, 0.0), raw.log_time, reader.to_cdr(raw))
    except BagReadError as err:
        raise BagPlayError(str(err)) from None


def build_parser(prog: str = "bag_player") -> argparse.ArgumentParser:
    """The player's command line (the options of `ros2 bag play` it shares keep their names)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Publishes the Image and CompressedImage topics of a bag with their recorded "
        "timing, and /clock, without rosbag2 (the bag is read with rosbags).",
    )
    p.add_argument("bag", help="rosbag2 folder (MCAP or sqlite3, with metadata.yaml) or ROS 1 .bag")
    p.add_argument("-r", "--rate", type=float, default=1.0, help="playback rate factor (default 1.0)")
    p.add_argument("-l", "--loop", action="store_true", help="play the bag again and again")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="image topics to play (default: all of them)")
    p.add_argument(
        "--remap", "-m", nargs="+", default=[], metavar="FROM:=TO", help="publish topic FROM under the name TO"
    )
    p.add_argument(
        "--clock",
        type=float,
        nargs="?",
        const=40.0,
        default=0.0,
        metavar="HZ",
        help="publish the bag time on /clock at HZ (default 40 when given), for use_sim_time",
    )
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=-1.0,
        metavar="S",
        help="before playing, wait until every played topic has a subscriber, at most S seconds "
        "(default: as long as it takes; 0: do not wait)",
    )
    return p


def check_arguments(args: argparse.Namespace) -> None:
    """Rules the parser cannot express; raises BagPlayError."""
    if not args.rate > 0:
        raise BagPlayError(f"--rate must be > 0, got {args.rate}")
    if args.clock < 0:
        raise BagPlayError(f"--clock must be >= 0 Hz, got {args.clock}")


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the player's own arguments, ['--ros-args', ...] or [])."""
    argv = list(argv)
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return argv[:i], argv[i:]
    return argv, []


def wait_for_subscribers(
    counts: Mapping[str, Callable[[], int]], stop: threading.Event, limit_s: float | None
) -> list[str]:
    """Waits until every topic's `counts[topic]()` is above 0, `stop` is set, or `limit_s` passes
    (None: no limit); returns the topics still without a subscriber."""
    start = time.monotonic()
    while True:
        missing = [topic for topic, count in counts.items() if count() == 0]
        if not missing or stop.wait(0.05) or (limit_s is not None and time.monotonic() - start > limit_s):
            return missing


def play_once(
    plan: PlayPlan,
    rate: float,
    publish: Callable[[Scheduled], None],
    clock: Callable[[int], None] | None,
    clock_hz: float,
    stop: threading.Event,
) -> int:
    """One pass over the bag: each message published when due, the bag time sent to `clock`
    at `clock_hz` in between and with every message. Returns how many went out (fewer when
    `stop` was set)."""
    period = 1.0 / clock_hz if clock is not None else None
    start = time.monotonic()
    next_clock = 0.0
    sent = 0
    for message in schedule(plan, rate):
        while True:
            now = time.monotonic() - start
            if period is not None and now >= next_clock:
                clock(plan.start_ns + int(now * rate * 1e9))
                next_clock += period
            if now >= message.due:
                break
            wake = message.due if period is None else min(message.due, next_clock)
            if stop.wait(max(wake - now, 0.0)):
                return sent
        if clock is not None:
            clock(message.log_time)
        publish(message)
        sent += 1
    return sent


def play(
    plan: PlayPlan,
    opts: argparse.Namespace,
    publish: Callable[[Scheduled], None],
    clock: Callable[[int], None] | None,
    subscribers: Mapping[str, Callable[[], int]],
    stop: threading.Event,
    log: Callable[[str, str], None],
) -> int:
    """The player's whole run, given how to publish a message and the clock, and each topic's
    subscriber count: wait for subscribers (as --wait-for-subscribers says), then play once or,
    with --loop, until `stop`. `log(level, text)` reports. Returns the exit code."""
    if opts.wait_for_subscribers != 0:
        log("info", f"waiting for a subscriber on {', '.join(subscribers)}")
        limit = None if opts.wait_for_subscribers < 0 else opts.wait_for_subscribers
        missing = wait_for_subscribers(subscribers, stop, limit)
        if missing and not stop.is_set():
            log("error", f"nothing subscribed {', '.join(missing)} within {limit:g} s; not playing")
            return 1
    played = ", ".join(f"{t.topic} ({t.count} {t.msgtype.rsplit('/', 1)[1]})" for t in plan.topics)
    log("info", f"playing {plan.bag}: {played} at rate {opts.rate:g}" + (", looping" if opts.loop else ""))
    while not stop.is_set():
        sent = play_once(plan, opts.rate, publish, clock, opts.clock, stop)
        if not stop.is_set():
            log("info", f"end of {plan.bag}: {sent} messages published")
        if not opts.loop:
            break
    return 0
