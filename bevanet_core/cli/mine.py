"""bevanet-mine: the frames of a bag on which the model is least sure, written out for labelling.

    bevanet-mine drive_bag --count 20 --out mined/

Writes OUT/images/<stamp_ns>.png (the picked frames, most doubtful first in the CSV),
OUT/scores.csv (every frame: mean calibrated confidence, low-confidence share, disagreement
between the plain and the mirrored pass, doubt, mIoU where the bag has labels, picked, rank),
OUT/contact_sheet.png, OUT/classes.json (the model's classes and colours, for the labelling tool
and for training on the labelled frames) and OUT/mined.json. Labelling and fine-tuning on the
result: docs/training.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..bags.evaluate import BagEvalError
from ..bags.reader import BagReadError
from ..checkpoint import CheckpointError
from .args import add, make_parser
from .common import add_model_args, apply_input_policy, build_segmenter, extras_guard
from .validate import check_input, check_output_dir, int_range


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-mine", __doc__.strip().splitlines()[0], epilog=__doc__.split("\n", 1)[1])
    p.add_argument("bag", help="rosbag2 folder, .mcap/.db3 file or ROS 1 .bag")
    p.add_argument("--count", type=int_range(1, 100000), required=True, help="how many frames to pick")
    add(p, "out", required=True, note="created")
    add(p, "image_topic", note="the one read (default: the bag's only image topic)")
    add(p, "label_topic")
    add(p, "max_frames", note="the frames scored")
    add_model_args(p)
    return p


@extras_guard("bevanet-mine")
def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_input(p, "bag", args.bag, "any")
    check_output_dir(p, "--out", args.out, [args.bag])
    apply_input_policy(args)
    from ..bags.mining import mine_bag

    try:
        seg = build_segmenter(args, input_size=args.input_size)
        result = mine_bag(
            Path(args.bag),
            seg,
            args.count,
            Path(args.out),
            image_topic=args.image_topic,
            label_topic=None if args.label_topic.lower() in ("", "none") else args.label_topic,
            max_frames=args.max_frames,
            progress=True,
        )
    except (BagEvalError, BagReadError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"bevanet-mine: error: {exc}", file=sys.stderr)
        return 2
    print(f"scored {len(result.scores)} frames of {result.image_topic}; the {len(result.picked)} most doubtful:")
    for s in result.picked:
        miou = f", mIoU {s.miou:.1f}" if s.miou is not None else ""
        print(
            f"  #{s.rank} stamp {s.stamp_ns / 1e9:.3f} s: confidence {s.mean_confidence:.3f}, "
            f"flip disagreement {s.flip_disagreement:.3f}{miou} -> {s.file}"
        )
    if result.bag_miou is not None:
        print(f"mIoU of the picked frames {result.picked_miou:.2f} vs the whole bag {result.bag_miou:.2f}")
    for err in result.errors[:5]:
        print(f"warning: {err}", file=sys.stderr)
    print(f"wrote {args.out}/images, scores.csv, contact_sheet.png, classes.json, mined.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
