"""The command line of bevanet-bag-eval: its arguments, and the checks of their combinations that
refuse a run before anything is loaded (exit 2 with the parser's message)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..bags.evaluate import DEFAULT_LABEL_TOPIC, OUTPUT_TOPICS
from ..paths import overlap
from .common import DefaultsFormatter, add_foxglove_args, add_model_args
from .validate import check_output_file, float_range, int_range, topic_name

DESCRIPTION = "bevanet-bag-eval: replay bags through the node's runtime; mIoU, latency, report, output bag."


def add_node_topic_args(p, prefix: str = "") -> None:
    """The topics and timeout of a frame's round trip through a running node (bag-eval, demo)."""
    p.add_argument(
        "--node-input",
        type=topic_name,
        default="/camera/image_raw",
        help=f"{prefix}topic the node subscribes (remap its `image` to it)",
    )
    p.add_argument("--node-mask", type=topic_name, default="/segmentation/mask", help=f"{prefix}the node's mask topic")
    p.add_argument(
        "--node-timeout",
        type=float_range(0.0, 3600.0, lo_open=True),
        default=5.0,
        help=f"{prefix}seconds to wait for each mask before counting the frame dropped",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bevanet-bag-eval",
        description=DESCRIPTION,
        formatter_class=DefaultsFormatter,
    )
    p.add_argument(
        "bags",
        nargs="+",
        type=Path,
        help="rosbag2 folders / .mcap / .db3 files, or ROS 1 .bag files",
    )
    p.add_argument(
        "--image-topic",
        type=topic_name,
        default=None,
        help="camera topic (default: the bag's only image topic)",
    )
    p.add_argument(
        "--label-topic",
        type=label_topic_name,
        default=DEFAULT_LABEL_TOPIC,
        help="mono8 ground-truth topic paired by header stamp; 'none' to skip accuracy",
    )
    p.add_argument("--require-labels", action="store_true", help="fail a bag that has no label topic")
    p.add_argument(
        "--stamp-tolerance-ms",
        type=float_range(0.0, 1e6),
        default=0.0,
        help="pair labels with frames whose stamps differ by at most this much",
    )
    p.add_argument(
        "--dataset-root",
        type=Path,
        default=None,
        help="labels from a dataset folder instead of a topic (k-th frame <-> k-th list entry)",
    )
    p.add_argument(
        "--list",
        type=Path,
        default=None,
        help="list file of --dataset-root (image label per line)",
    )
    p.add_argument(
        "--dataset",
        default="camvid",
        choices=("camvid", "cityscapes"),
        help="label mapping of --dataset-root",
    )
    p.add_argument(
        "--max-frames",
        type=int_range(1),
        default=None,
        help="stop each bag after this many frames",
    )
    p.add_argument("--warmup", type=int_range(0), default=1, help="first frames left out of the latency statistics")
    add_model_args(p)
    add_foxglove_args(p)
    n = p.add_argument_group("deployed node (needs rclpy)")
    n.add_argument(
        "--through-node",
        action="store_true",
        help="send frames over DDS to a running segmentation node, not the in-process runtime",
    )
    add_node_topic_args(n)
    o = p.add_argument_group("outputs")
    o.add_argument("--json", type=Path, default=None, help="JSON report")
    o.add_argument("--markdown", type=Path, default=None, help="markdown summary")
    o.add_argument("--plot", type=Path, default=None, help="PNG: latency trace and per-class IoU")
    o.add_argument("--montage", type=Path, default=None, help="PNG: camera | overlay | ground truth rows")
    o.add_argument("--video", type=Path, default=None, help="mp4 of the overlays (single process only)")
    o.add_argument(
        "--out-bag",
        type=Path,
        default=None,
        help="output bag (one input) or folder of output bags (several inputs): inputs plus "
        f"{', '.join(OUTPUT_TOPICS)} at the original stamps",
    )
    o.add_argument("--out-format", default="mcap", choices=("mcap", "sqlite3"))
    o.add_argument(
        "--no-copy-inputs",
        action="store_true",
        help="output bags hold only the segmentation topics",
    )
    o.add_argument("--overwrite", action="store_true", help="replace existing output bags")
    return p


def label_topic_name(text: str) -> str:
    """A topic name, or 'none' (or '') for no labels."""
    return text if text.lower() in ("", "none") else topic_name(text)


def output_bags(bags: Sequence[Path], out: Path | None) -> list[Path | None]:
    """Output path per input bag: `out` for one bag, out/<name>_segmented for several."""
    if out is None:
        return [None] * len(bags)
    if len(bags) == 1:
        return [out]
    names = [Path(b).stem if Path(b).suffix in (".bag", ".mcap", ".db3") else Path(b).name for b in bags]
    if len(set(names)) != len(names):
        raise ValueError("several input bags share a name; evaluate them in separate runs or rename them")
    out.mkdir(parents=True, exist_ok=True)
    return [out / f"{n}_segmented" for n in names]


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, world_size: int):
    """Refuses option combinations that cannot work (exits 2 with the parser's message);
    returns the output bag of every input bag."""
    if (args.dataset_root is None) != (args.list is None):
        parser.error("--dataset-root and --list go together")
    if args.dataset_root is not None and len(args.bags) != 1:
        parser.error("labels from --dataset-root/--list pair by frame order, so give exactly one bag")
    missing = [str(b) for b in args.bags if not Path(b).exists()]
    if missing:
        parser.error(f"bag(s) not found: {', '.join(missing)}")
    if args.video is not None and world_size > 1:
        parser.error("--video needs a single process (it is one stream); drop it under torchrun")
    if args.through_node and world_size > 1:
        parser.error("--through-node drives one node from one process; drop it under torchrun")
    if args.out_bag is not None:
        why = overlap(args.out_bag, args.bags)
        if why:
            parser.error(f"--out-bag {args.out_bag} would destroy an input bag: {why}")
        if len(args.bags) > 1 and args.out_bag.exists() and not args.out_bag.is_dir():
            parser.error(f"--out-bag {args.out_bag}: several bags need a folder, this is a file")
    try:
        outs = output_bags(args.bags, args.out_bag)
    except ValueError as err:
        parser.error(str(err))
    for out in outs:
        why = overlap(out, args.bags) if out is not None else None
        if why:
            parser.error(f"--out-bag {out} would destroy an input bag: {why}")
    for option, path in (
        ("--json", args.json),
        ("--markdown", args.markdown),
        ("--plot", args.plot),
        ("--montage", args.montage),
        ("--video", args.video),
    ):
        check_output_file(parser, option, path, args.bags)
    return outs
