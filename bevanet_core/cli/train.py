"""bevanet-train: train a segmentation model from a YAML recipe (single process or torchrun)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from ..data.files import DatasetError, dataset_error_message
from ..training.checkpointing import CheckpointError, CheckpointWriteError
from ..training.config import load_config
from ..training.engine import train
from .args import add, make_parser
from .common import extras_guard
from .validate import check_input, check_output_dir


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "bevanet-train",
        __doc__.strip().splitlines()[0],
        epilog="Multi-GPU: torchrun --nproc_per_node=N -m bevanet_core.cli.train ...",
    )
    parser.add_argument("--config", help="training recipe YAML (see training/; default: the built-in defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override config values, e.g. optim.lr=0.01 run.precision=bf16 (default: none)",
    )
    add(parser, "root", note="sets data.root (default: the recipe's)")
    add(parser, "out", note="the run folder, sets run.out_dir (default: the recipe's)")
    add(parser, "resume")
    return parser


@extras_guard("bevanet-train")
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_input(parser, "--root", args.root, "dir")
    check_output_dir(parser, "--out", args.out, [args.root] if args.root else [])
    overrides = list(args.overrides)
    if args.root:
        overrides.append(f"data.root={args.root}")
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    try:
        cfg = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    try:
        result = train(cfg, resume=args.resume)
    except DatasetError as exc:  # a missing list, image or bad label: named, without a traceback
        print(f"bevanet-train: error: {dataset_error_message(exc)}", file=sys.stderr)
        return 2
    except CheckpointError as exc:  # a busy run folder, another network's checkpoint, a full disk
        print(f"bevanet-train: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CheckpointWriteError) else 2
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
