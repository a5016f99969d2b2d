"""bevanet-make-bag: images, a video or a dataset split -> a rosbag2 camera stream (no ROS needed).

    bevanet-make-bag --images frames/ --labels labels/ --out my_bag --rate 10
    bevanet-make-bag --video drive.mp4 --every 2 --resize 480x270 --compressed --out drive_bag
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
from .common import DefaultsFormatter, add_input_policy_args, apply_input_policy, extras_guard
from .validate import check_input, check_output_dir, float_range, int_range, topic_name

# ROS 2 stamps hold seconds in an int32: the last frame must stay below 2^31 s
MAX_START_TIME = 2_000_000_000.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bevanet-make-bag",
        description=__doc__.split("\n\n")[0],
        epilog="Labels from --labels are stored as they are; --void-label V maps "
        "V to 255. --dataset reads labels through bevanet_core.data "
        "(CamVid void 11 -> 255), as bevanet-eval does.",
        formatter_class=DefaultsFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of images, recorded in file-name order")
    src.add_argument("--video", type=Path, help="video file (anything OpenCV decodes)")
    src.add_argument("--dataset", choices=sources.LIST_DATASETS, help="dataset split given by --root and --list")
    p.add_argument("--labels", type=Path, default=None, help="label PNGs matched to --images by file name")
    p.add_argument(
        "--void-label",
        type=int_range(0, 255),
        default=None,
        help="label value to store as 255 (ignore)",
    )
    p.add_argument("--root", type=Path, default=None, help="dataset root (with --dataset)")
    p.add_argument(
        "--list",
        type=Path,
        default=None,
        help="split list 'image label' per line (with --dataset)",
    )
    p.add_argument("--out", type=Path, required=True, help="output bag folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    p.add_argument("--format", default="mcap", choices=("mcap", "sqlite3"), help="rosbag2 storage")
    p.add_argument(
        "--rate",
        type=float_range(0.0, 1e6, lo_open=True),
        default=None,
        help="frames per second of the stamps (default: the video's rate, else 10)",
    )
    p.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of raw rgb8")
    p.add_argument("--jpeg-quality", type=int_range(1, 100), default=90)
    p.add_argument(
        "--topic",
        type=topic_name,
        default="/camera/image_raw",
        help="camera topic (with --compressed '/compressed' is appended)",
    )
    p.add_argument("--info-topic", type=topic_name, default="/camera/camera_info")
    p.add_argument("--label-topic", type=topic_name, default="/camera/labels")
    p.add_argument("--frame-id", default="camera")
    p.add_argument(
        "--start-time",
        type=float_range(0.0, MAX_START_TIME),
        default=1_700_000_000.0,
        help="stamp of the first frame, seconds since the epoch (fixed: reproducible bags)",
    )
    p.add_argument("--every", type=int_range(1), default=1, help="keep every N-th frame")
    p.add_argument("--max-frames", type=int_range(1), default=None)
    p.add_argument("--resize", default=None, help="store frames (and labels, nearest) at WxH")
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
    if args.every < 1 or (args.max_frames is not None and args.max_frames < 1):
        parser.error("--every and --max-frames must be at least 1")
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
        sources.parse_size(args.resize)
    except sources.SourceError as err:
        parser.error(f"--resize: {err}")
    apply_input_policy(args)
    try:
        size = sources.parse_size(args.resize)
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
            storage=args.format,
            compressed=args.compressed,
            jpeg_quality=args.jpeg_quality,
            image_topic=args.topic,
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
        f"{summary.duration_s:.2f} s at {options.rate:g} Hz, {args.format}, "
        f"{summary.size_bytes / 1e6:.2f} MB; topics: {topics}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
