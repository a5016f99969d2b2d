"""bevanet-make-bag: images, a video or a dataset split -> a rosbag2 camera stream (no ROS needed).

    bevanet-make-bag --images frames/ --labels labels/ --out my_bag --rate 10
    bevanet-make-bag --video drive.mp4 --every 2 --frame-size 480x270 --compressed --out drive_bag
    bevanet-make-bag --dataset camvid --root data/camvid --list val.lst --out camvid_val_bag

Topics: camera images on /camera/image_raw (sensor_msgs/Image rgb8), or with --compressed on
/camera/image_raw/compressed (sensor_msgs/CompressedImage, JPEG); sensor_msgs/CameraInfo on
/camera/camera_info; ground-truth labels (mono8, 255 = ignore) on /camera/labels. Every frame's
messages share one header stamp (= bag time), start_time + i / rate. The bag appears only when
complete: a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..bags import sources
from ..bags.writer import BagWriteError, CameraBagOptions, write_camera_bag
from .args import add, make_parser
from .common import add_input_policy_args, apply_input_policy, extras_guard
from .validate import check_input, check_output_dir, float_range, int_range, topic_name

# ROS 2 stamps hold seconds in an int32: the last frame must stay below 2^31 s
MAX_START_TIME = 2_000_000_000.0


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "bevanet-make-bag",
        __doc__.split("\n\n")[0],
        epilog="Labels from --labels are stored as they are; --void-label V maps "
        "V to 255. --dataset reads labels through bevanet_core.data "
        "(CamVid void 11 -> 255), as bevanet-eval does.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of images, recorded in file-name order")
    src.add_argument("--video", type=Path, help="video file (anything OpenCV decodes)")
    add(src, "dataset", choices=sources.LIST_DATASETS, note="a split given by --root and --list")
    add(p, "labels", note="matched to --images by file name")
    p.add_argument(
        "--void-label",
        type=int_range(0, 255),
        default=None,
        help="label value to store as 255 (ignore) (default: none)",
    )
    add(p, "root", note="with --dataset")
    add(p, "list", note="with --dataset")
    add(p, "out", required=True, note="the bag written (must not exist)")
    add(p, "overwrite")
    add(p, "storage")
    p.add_argument(
        "--rate",
        type=float_range(0.0, 1e6, lo_open=True),
        default=None,
        help="frames per second of the stamps (default: the video's rate, else 10)",
    )
    p.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of raw rgb8")
    p.add_argument("--jpeg-quality", type=int_range(1, 100), default=90, help="JPEG quality of --compressed")
    add(
        p,
        "image_topic",
        default="/camera/image_raw",
        note="the one written; with --compressed '/compressed' is appended",
    )
    p.add_argument(
        "--info-topic", type=topic_name, default="/camera/camera_info", help="sensor_msgs/CameraInfo topic written"
    )
    add(p, "label_topic")
    p.add_argument("--frame-id", default="camera", help="header frame_id of every message")
    p.add_argument(
        "--start-time",
        type=float_range(0.0, MAX_START_TIME),
        default=1_700_000_000.0,
        help="stamp of the first frame, seconds since the epoch (fixed: reproducible bags)",
    )
    add(p, "every")
    add(p, "max_frames")
    add(p, "frame_size", note="store frames (and labels, nearest) at this size (default: as read)", legacy=["--resize"])
    add_input_policy_args(p)
    return p


@extras_guard("bevanet-make-bag")
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.labels is not None and args.images is None:
        parser.error("--labels goes with --images")
    if args.dataset is not None and (args.root is None or args.list is None):
        parser.error("--dataset needs --root and --list")
    if args.dataset is None and (args.root is not None or args.list is not None):
        parser.error("--root/--list go with --dataset")
    if args.labels is not None and args.label_topic.lower() in ("", "none"):
        parser.error("--label-topic none records no labels: drop --labels instead")
    check_input(parser, "--images", args.images, "dir")
    check_input(parser, "--labels", args.labels, "dir")
    check_input(parser, "--video", args.video, "file")
    check_input(parser, "--root", args.root, "dir")
    if args.list is not None and args.root is not None and not Path(args.list).exists():
        in_root = Path(args.root) / args.list  # a list file is found in --root too, as the reader does
        if not in_root.exists():
            parser.error(f"--list {args.list}: does not exist (neither here nor in --root {args.root})")
        args.list = str(in_root)
    check_input(parser, "--list", args.list, "file")
    inputs = [p for p in (args.images, args.labels, args.video, args.root, args.list) if p]
    check_output_dir(parser, "--out", args.out, inputs)
    try:
        sources.parse_size(args.frame_size)
    except sources.SourceError as err:
        parser.error(f"--frame-size: {err}")
    apply_input_policy(args)
    try:
        size = sources.parse_size(args.frame_size)
        rate = args.rate
        if args.images is not None:
            frames = sources.folder_frames(args.images, args.labels, size, args.every, args.max_frames, args.void_label)
        elif args.video is not None:
            if rate is None:
                fps = sources.video_fps(args.video)
                rate = fps / args.every if fps else None
            frames = sources.video_frames(args.video, size, args.every, args.max_frames)
        else:
            frames = sources.list_frames(args.root, args.list, args.dataset, size, args.every, args.max_frames)
        options = CameraBagOptions(
            rate=rate or 10.0,
            storage=args.storage,
            compressed=args.compressed,
            jpeg_quality=args.jpeg_quality,
            image_topic=args.image_topic,
            info_topic=args.info_topic,
            label_topic=args.label_topic,
            frame_id=args.frame_id,
            start_time=args.start_time,
            overwrite=args.overwrite,
            custom_data={
                "bevanet.source": str(args.images or args.video or args.list),
                **({"bevanet.dataset": args.dataset} if args.dataset else {}),
            },
        )
        summary = write_camera_bag(frames, args.out, options)
    except (sources.SourceError, BagWriteError, ValueError, OSError) as err:
        print(f"bevanet-make-bag: {err}", file=sys.stderr)
        print(f"bevanet-make-bag: nothing was written to {args.out}", file=sys.stderr)
        return 1
    topics = ", ".join(f"{t} ({n})" for t, n in summary.topics.items())
    print(
        f"wrote {summary.path}: {summary.frames} frames ({summary.labels} labelled), "
        f"{summary.duration_s:.2f} s at {options.rate:g} Hz, {args.storage}, "
        f"{summary.size_bytes / 1e6:.2f} MB; topics: {topics}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
