"""bevanet-finetune-data: your labelled frames plus CamVid as one training list.

    bevanet-finetune-data --mined mined/ --labels labels/ --out finetune/ --base-root ../shared/data/camvid

Reads the labels (PNGs named like the frames of MINED/images: class indices, or the class
colours of MINED/classes.json), writes them as class-index PNGs to OUT/labels and OUT/train.lst
(absolute paths: the base list, then each of your frames --repeat times). Then:
bevanet-train --config training/bevanet-s_camvid-finetune.yaml --set data.train_list=$PWD/OUT/train.lst
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..data.datasets import DatasetError
from .args import add, make_parser
from .validate import check_input, check_output_dir, int_range


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-finetune-data", __doc__.strip().splitlines()[0], epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--mined", required=True, help="the folder bevanet-mine wrote (images/, classes.json)")
    add(p, "labels", required=True, note="of the mined frames: class indices or the colours of classes.json")
    add(p, "out", required=True, note="labels/ and train.lst")
    p.add_argument(
        "--base-root", help="data set root whose list comes first (e.g. ../shared/data/camvid; default: none)"
    )
    p.add_argument("--base-list", default="train.lst", help="list file under --base-root")
    p.add_argument("--repeat", type=int_range(1, 1000), default=4, help="times each own frame is listed")
    p.add_argument(
        "--hold-out",
        type=int_range(0),
        default=0,
        help="keep the last N labelled frames out of training, listed in OUT/held_out.lst (to calibrate on)",
    )
    return p


def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_input(p, "--mined", args.mined, "dir")
    check_input(p, "--labels", args.labels, "dir")
    check_input(p, "--base-root", args.base_root, "dir")
    check_output_dir(p, "--out", args.out, [args.mined, args.labels])
    from ..data.finetune import prepare_finetune

    try:
        data = prepare_finetune(
            Path(args.mined),
            Path(args.labels),
            Path(args.out),
            Path(args.base_root) if args.base_root else None,
            args.base_list,
            args.repeat,
            args.hold_out,
        )
    except (DatasetError, ValueError) as exc:
        print(f"bevanet-finetune-data: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {data.list_file}: {data.base_frames} base frames + {data.own_frames} labelled frames "
        f"x {data.repeat}; labels as class indices in {Path(args.out) / 'labels'}"
    )
    if data.held_out_file is not None:
        print(f"wrote {data.held_out_file}: {data.held_out} labelled frames kept out of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
