"""bevanet-eval: mIoU, per-class IoU and pixel accuracy of a model on a labelled dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import yaml

from ..checkpoint import CheckpointError
from ..data.camvid_splits import CAMVID_SPLITS, camvid_sequence, camvid_split_pairs
from ..data.datasets import build_dataset, cityscapes_trainid_to_labelid
from ..data.files import DatasetError, read_pair_list
from ..evaluation.evaluate import evaluate_segmenter, format_report, write_json
from ..paths import OutputNameError
from .args import add, make_parser
from .common import (
    add_model_args,
    add_tta_args,
    apply_input_policy,
    build_segmenter,
    extras_guard,
    is_exported_model,
    tta_summary,
    with_tta,
)
from .validate import check_input, check_output_dir, check_output_file

REPO = Path(__file__).resolve().parents[2]  # where the recipes named in weights' metadata live


def _round8(x: int) -> int:
    return max(8, (x + 7) // 8 * 8)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-eval", __doc__.strip())
    add(p, "dataset", required=True)
    add(
        p,
        "root",
        note="custom: ROOT/classes.json, ROOT/images/<split>/, ROOT/labels/<split>/; "
        "or give --image-dir, --label-dir and --classes instead (default: none)",
    )
    add(p, "list")
    add(
        p,
        "split",
        note="when no --list is given; several comma-separated, each reported (default: camvid "
        "'heldout,val': the drive that model selection holds out, then val; others 'val'). CamVid: "
        + ", ".join(CAMVID_SPLITS),
    )
    p.add_argument("--encoding", default="index", choices=["index", "rgb"], help="CamVid label encoding")
    p.add_argument("--image-dir", help="custom dataset: image folder (default: none)")
    p.add_argument("--label-dir", help="custom dataset: label folder (default: none)")
    p.add_argument("--classes", help="custom dataset: classes JSON (default: none)")
    add_model_args(
        p, note="(default: a checkpoint runs at the images' size rounded up to a multiple of 8, an export at its own)"
    )
    add_tta_args(p)
    add(p, "max_frames")
    add(p, "json")
    p.add_argument(
        "--save-predictions",
        help="folder for prediction PNGs (Cityscapes: labelIds, ready for the official test server; default: none)",
    )
    return p


@extras_guard("bevanet-eval")
def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    folders = {"--image-dir": args.image_dir, "--label-dir": args.label_dir, "--classes": args.classes}
    if args.dataset == "custom" and any(folders.values()):
        missing = [option for option, value in folders.items() if not value]
        if missing:
            p.error(f"a custom dataset given by folders needs {', '.join(missing)} too")
    elif args.root is None:
        p.error(
            "--root is required" + (" (or --image-dir, --label-dir and --classes)" if args.dataset == "custom" else "")
        )
    check_input(p, "--root", args.root, "dir")
    if args.list:
        if args.root is None:
            p.error("--list needs --root (its paths are relative to it)")
        check_input(p, "--list", Path(args.root) / args.list, "file")
    for option, folder in (("--image-dir", args.image_dir), ("--label-dir", args.label_dir)):
        check_input(p, option, folder, "dir")
    check_input(p, "--classes", args.classes, "file")
    inputs = [args.root] if args.root else [args.image_dir, args.label_dir]
    check_output_file(p, "--json", args.json, inputs)
    check_output_dir(p, "--save-predictions", args.save_predictions, inputs)
    if args.list:
        splits = [None]
    else:
        splits = [s.strip() for s in (args.split or DEFAULT_SPLITS.get(args.dataset, "val")).split(",") if s.strip()]
        if not splits:
            p.error(f"--split names no split: {args.split!r}")
        if args.save_predictions and len(splits) > 1:
            p.error("--save-predictions takes one split: name it with --split")
    apply_input_policy(args)  # the dataset's images are read under the same pixel cap
    try:
        extra = {}
        if args.dataset == "custom" and args.image_dir:
            extra = dict(image_dir=args.image_dir, label_dir=args.label_dir, classes_file=args.classes)
        root = Path(args.root) if args.root else None
        list_file = root / args.list if args.list else None
        datasets = [
            build_dataset(args.dataset, root, list_file, split or "val", None, args.encoding, **extra)
            for split in splits
        ]
        input_size = args.input_size
        if input_size is None and not is_exported_model(args.weights):  # an export runs at its own size
            image, _ = datasets[0][0]
            input_size = (_round8(image.shape[1]), _round8(image.shape[0]))
        seg = with_tta(args, build_segmenter(args, input_size=input_size))
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"bevanet-eval: error: {exc}", file=sys.stderr)
        return 2
    if seg.info.num_classes != datasets[0].num_classes:
        print(
            f"bevanet-eval: error: the model has {seg.info.num_classes} classes but {args.dataset} has "
            f"{datasets[0].num_classes}",
            file=sys.stderr,
        )
        return 2
    to_ids = cityscapes_trainid_to_labelid if args.dataset == "cityscapes" else None
    trained_on = training_data_of(seg.info)
    reports = {}
    for split, dataset in zip(splits, datasets, strict=True):
        name = split or str(args.list)
        if len(splits) > 1:
            print(f"{name}: {len(dataset)} images", flush=True)
        try:
            report = evaluate_segmenter(
                seg,
                dataset,
                args.max_frames,
                Path(args.save_predictions) if args.save_predictions else None,
                to_ids,
                progress=True,
            )
        except (DatasetError, OutputNameError) as exc:  # bad data, or prediction names that would collide
            print(f"bevanet-eval: error: {exc}", file=sys.stderr)
            return 2
        report["split"] = name
        report["seen_in_training"] = seen_in_training(args.dataset, root, trained_on, dataset, args.max_frames)
        reports[name] = report
        if "write_error" in report:
            break  # the disk is full: report what was measured, then fail
    report = dict(reports[splits[0] or str(args.list)])
    report.update(
        {
            "dataset": args.dataset,
            **_pipeline_of(seg),
            "tta": tta_summary(seg),
            "trained_on": trained_on,
        }
    )
    proxy = (seg.info.extra or {}).get("proxy")
    if proxy:
        report["proxy"] = proxy
    if len(reports) > 1:
        report["splits"] = {k: {f: v for f, v in r.items() if f != "confusion_matrix"} for k, r in reports.items()}
    for name, r in reports.items():
        if len(reports) > 1:
            print(f"\n== {name}")
        print(format_report(r))
        seen = r["seen_in_training"]
        if seen and seen["same_drive"]:
            what = (
                f"{seen['images']} of these {r['images']} images are in"
                if seen["images"]
                else f"{seen['same_drive']} of these {r['images']} images are frames of drives in"
            )
            print(
                f"note: {what} the data the model trained on ({trained_on}): this figure measures memory "
                "of those streets, not streets the model never saw"
            )
            if proxy:
                print(proxy_line(proxy))
    print(
        f"pipeline: {report['pipeline']} ({report['device']}), model file {report['model_file'] or report['weights']}"
    )
    if report["tta"]:
        print(seg.describe())
    if args.json:
        write_json(report, Path(args.json))
        print(f"report written to {args.json}")
    failed = [r["write_error"] for r in reports.values() if "write_error" in r]
    if failed:
        print(f"bevanet-eval: error: {failed[0]} (the report covers the images before it)", file=sys.stderr)
        return 1
    return 0


def proxy_line(proxy: dict) -> str:
    """The honest figure a model that trained on every labelled frame carries: its held-out twin's."""
    line = (
        f"its honest figure is its held-out twin's (the same recipe without drive {', '.join(proxy['held_out'])}, "
        f"iteration {proxy.get('iteration')}): {proxy['heldout_miou']:.2f} mIoU on that drive"
    )
    plateau = proxy.get("plateau")
    if plateau:
        line += f"; its curve rose {plateau['gain']:+.2f} over its last {plateau['window']} iterations" + (
            " (flat)" if plateau["flat"] else " (still rising)"
        )
    return line


def _pipeline_of(seg) -> dict:
    """The pipeline that ran (test-time augmentation wraps the segmenter)."""
    pipeline = dict(getattr(seg, "segmenter", seg).pipeline)
    pipeline["pipeline"] = (
        f"{pipeline['backend']} {pipeline['precision']}, {pipeline['threads'] or 'default'} thread(s)"
    )
    return pipeline


# the splits bevanet-eval reports when none is named: CamVid's held-out drive first, the split
# that model selection uses, then val (a second figure, honest only for a model that did not train on it)
DEFAULT_SPLITS = {"camvid": "heldout,val"}


def training_data_of(info) -> Optional[str]:
    """The split or list file the weights trained on, from their metadata (or their recipe's)."""
    extra = getattr(info, "extra", None) or {}
    if extra.get("trained_on"):
        return str(extra["trained_on"])
    recipe = extra.get("recipe")
    path = REPO / recipe if recipe else None
    if path is None or not path.is_file():
        return None
    try:
        data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    except yaml.YAMLError:
        return None
    return data.get("train_list") or data.get("train_split") or "train"


def seen_in_training(dataset_name: str, root: Path, trained_on: Optional[str], dataset, limit=None) -> Optional[dict]:
    """How many of `dataset`'s images the model trained on, and how many are frames of a drive it
    trained on (CamVid: the file-name prefix); None where that is unknown."""
    if dataset_name != "camvid" or not trained_on:
        return None
    try:
        if trained_on.endswith(".lst"):
            seen = {image for image, _ in read_pair_list(root, root / trained_on)}
        else:
            seen = {image for image, _ in camvid_split_pairs(root, trained_on)}
    except DatasetError:
        return None
    drives = {camvid_sequence(image) for image in seen}
    pairs = dataset.pairs if limit is None else dataset.pairs[:limit]
    return {
        "images": sum(image in seen for image, _ in pairs),
        "same_drive": sum(camvid_sequence(image) in drives for image, _ in pairs),
    }


if __name__ == "__main__":
    sys.exit(main())
