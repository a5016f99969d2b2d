"""bevanet-eval: mIoU, per-class IoU and pixel accuracy of a model on a labelled dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..checkpoint import CheckpointError
from ..data.datasets import DatasetError, build_dataset, cityscapes_trainid_to_labelid
from ..evaluation.evaluate import evaluate_segmenter, format_report, write_json
from .common import add_model_args, apply_input_policy, build_segmenter, extras_guard
from .validate import check_input, check_output_dir, check_output_file, int_range


def _round8(x: int) -> int:
    return max(8, (x + 7) // 8 * 8)


@extras_guard("bevanet-eval")
def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip())
    p.add_argument("--dataset", required=True, choices=["camvid", "cityscapes", "ade20k", "custom"])
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--list", help="list file of 'image label' pairs relative to --root")
    p.add_argument("--split", default="val", help="split when no --list is given (default val)")
    p.add_argument("--encoding", default="index", choices=["index", "rgb"], help="CamVid label encoding")
    p.add_argument("--image-dir", help="custom dataset: image folder")
    p.add_argument("--label-dir", help="custom dataset: label folder")
    p.add_argument("--classes", help="custom dataset: classes JSON")
    add_model_args(p)  # --input-size defaults to the images' size rounded up to a multiple of 8
    p.add_argument("--limit", type=int_range(1), help="evaluate the first N images only")
    p.add_argument("--json", dest="json_out", help="write the report as JSON here")
    p.add_argument(
        "--save-predictions",
        help="folder for prediction PNGs (Cityscapes: labelIds, ready for the official test server)",
    )
    args = p.parse_args(argv)
    check_input(p, "--root", args.root, "dir")
    if args.list:
        check_input(p, "--list", Path(args.root) / args.list, "file")
    for option, folder in (("--image-dir", args.image_dir), ("--label-dir", args.label_dir)):
        check_input(p, option, folder, "dir")
    check_input(p, "--classes", args.classes, "file")
    check_output_file(p, "--json", args.json_out, [args.root])
    check_output_dir(p, "--save-predictions", args.save_predictions, [args.root])
    apply_input_policy(args)  # the dataset's images are read under the same pixel cap
    try:
        extra = {}
        if args.dataset == "custom":
            extra = dict(image_dir=args.image_dir, label_dir=args.label_dir, classes_file=args.classes)
        dataset = build_dataset(
            args.dataset,
            Path(args.root),
            Path(args.root) / args.list if args.list else None,
            args.split,
            None,
            args.encoding,
            **extra,
        )
        input_size = args.input_size
        if input_size is None:
            image, _ = dataset[0]
            input_size = (_round8(image.shape[1]), _round8(image.shape[0]))
        seg = build_segmenter(args, input_size=input_size)
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"bevanet-eval: error: {exc}", file=sys.stderr)
        return 2
    if seg.info.num_classes != dataset.num_classes:
        print(
            f"bevanet-eval: error: the model has {seg.info.num_classes} classes but {args.dataset} has "
            f"{dataset.num_classes}",
            file=sys.stderr,
        )
        return 2
    to_ids = cityscapes_trainid_to_labelid if args.dataset == "cityscapes" else None
    try:
        report = evaluate_segmenter(
            seg,
            dataset,
            args.limit,
            Path(args.save_predictions) if args.save_predictions else None,
            to_ids,
            progress=True,
        )
    except DatasetError as exc:
        print(f"bevanet-eval: error: {exc}", file=sys.stderr)
        return 2
    report.update(
        {
            "dataset": args.dataset,
            "weights": args.weights or "shipped default",
            "backend": args.backend,
            "precision": args.precision,
            "input_size": list(seg.input_size),
        }
    )
    print(format_report(report))
    if args.json_out:
        write_json(report, Path(args.json_out))
        print(f"report written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
