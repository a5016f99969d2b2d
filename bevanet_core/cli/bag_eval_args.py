"""The command line of bevanet-bag-eval: its arguments, and the checks of their combinations that
refuse a run before anything is loaded (exit 2 with the parser's message)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..bags.evaluate import OUTPUT_TOPICS
from ..paths import overlap
from .args import add, hide, make_parser
from .common import add_foxglove_args, add_model_args
from .validate import check_output_file, float_range

DESCRIPTION = "bevanet-bag-eval: replay bags through the node's runtime; mIoU, latency, report, output bag."


def add_node_topic_args(p, note: str = "") -> None:
    """The topics and timeout of a frame's round trip through a running node (bag-eval, demo)."""
    for dest in ("node_input", "node_mask", "node_timeout"):
        add(p, dest, note=note)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-bag-eval", DESCRIPTION)
    p.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders / .mcap / .db3 files, or ROS 1 .bag files")
    add(p, "image_topic", note="the one read (default: the bag's only image topic)")
    add(p, "label_topic")
    p.add_argument("--require-labels", action="store_true", help="fail a bag that has no label topic")
    p.add_argument(
        "--stamp-tolerance-ms",
        type=float_range(0.0, 1e6),
        default=0.0,
        help="pair labels with frames whose stamps differ by at most this much",
    )
    add(p, "root", note="labels from a dataset folder instead of a topic (k-th frame <-> k-th list entry)")
    add(p, "list", note="with --root")
    add(p, "dataset", default="camvid", choices=("camvid", "cityscapes"), note="the label mapping of --root")
    add(p, "max_frames", note="of each bag")
    add(p, "warmup", default=1)
    add_model_args(p)
    add_foxglove_args(p)
    n = p.add_argument_group("deployed node (needs rclpy)")
    add(n, "through_node")
    add_node_topic_args(n)
    o = p.add_argument_group("outputs")
    add(o, "json")
    o.add_argument("--markdown", type=Path, default=None, help="markdown summary (default: none)")
    add(o, "plot", note="PNG, latency trace and per-class IoU")
    o.add_argument(
        "--montage", type=Path, default=None, help="PNG: camera | overlay | ground truth rows (default: none)"
    )
    hide(
        o.add_argument(
            "--overlay-video",
            "--video",
            type=Path,
            default=None,
            help="mp4 of the overlays, single process only (default: none)",
        ),
        "--video",
    )
    o.add_argument(
        "--out-bag",
        type=Path,
        default=None,
        help="output bag (one input) or folder of output bags (several inputs): inputs plus "
        f"{', '.join(OUTPUT_TOPICS)} at the original stamps (default: none)",
    )
    add(o, "storage")
    o.add_argument(
        "--no-copy-inputs",
        action="store_true",
        help="output bags hold only the segmentation topics",
    )
    add(o, "overwrite")
    return p


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
    if (args.root is None) != (args.list is None):
        parser.error("--root and --list go together")
    if args.root is not None and len(args.bags) != 1:
        parser.error("labels from --root/--list pair by frame order, so give exactly one bag")
    missing = [str(b) for b in args.bags if not Path(b).exists()]
    if missing:
        parser.error(f"bag(s) not found: {', '.join(missing)}")
    if args.overlay_video is not None and world_size > 1:
        parser.error("--overlay-video needs a single process (it is one stream); drop it under torchrun")
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
        ("--overlay-video", args.overlay_video),
    ):
        check_output_file(parser, option, path, args.bags)
    return outs
