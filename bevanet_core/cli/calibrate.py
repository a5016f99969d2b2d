"""bevanet-calibrate: fit the temperature, and the monotone curve after it, that make the published
confidence a probability, on labelled frames the model did not train on, and store them in the
weights' metadata.

    bevanet-calibrate --dataset camvid --root ../shared/data/camvid --split heldout \\
        --weights run/best.safetensors --write

It reports the ECE (15 bins, valid pixels) and the AUROC of the confidence at telling right
pixels from wrong ones before and after the fit, the ECE cross-fitted (fitted on the first half
of the frames and measured on the second, and the other way round: the figure to expect on new
frames, as the in-sample one flatters the fit), and which training frames the fit split
shares with the model's training data (read from the recipe named in the weights' metadata, or
`--trained-on`): for CamVid by drive, since frames of one drive are near-duplicates.
A checkpoint is fitted in full precision (`--precision auto` means fp32 here): the calibration
describes the network, and the int8 pipelines backend auto may choose are guarded to keep its
confidence.

A model trained on every labelled frame has no unseen frames to fit on. Its temperature comes
from the held-out run of the same recipe (trained without the held-out drive), stored in it with
`--store-in`, and its record says so:

    bevanet-calibrate --dataset camvid --root ../shared/data/camvid --split heldout \
        --weights runs/bevanet-s_camvid-480x360-heldout/best.safetensors \
        --store-in bevanet_core/weights/bevanet_s_camvid.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..checkpoint import CheckpointError
from ..data.camvid_splits import camvid_sequence
from ..data.datasets import DatasetError, build_dataset
from ..evaluation.calibration import (
    CALIBRATION_KEY,
    CalibrationMeter,
    fit_temperature,
    format_calibration,
    max_prob_and_correct,
    write_safetensors_metadata,
)
from ..evaluation.confidence_curve import CURVE_KEY, curve_record, fit_isotonic
from .args import add, make_parser
from .common import add_model_args, apply_input_policy, build_segmenter, extras_guard, is_exported_model
from .validate import check_input, check_output_file, int_range

REPO = Path(__file__).resolve().parents[2]


def _frames(dataset_name: str, pairs) -> list[str]:
    """What a split is made of: CamVid drives (frames of one drive are near-duplicates), else frame names."""
    if dataset_name == "camvid":
        return sorted({camvid_sequence(Path(image)) for image, _ in pairs})
    return sorted({Path(image).stem for image, _ in pairs})


def training_frames(info, dataset_name: str, root: Path, trained_on: Optional[str]) -> tuple[Optional[list[str]], str]:
    """(drives or frames the model trained on, how that was found); (None, why) when unknown."""
    if trained_on:
        ds = build_dataset(dataset_name, root, None, trained_on)
        return _frames(dataset_name, ds.pairs), f"--trained-on {trained_on}"
    recipe = (info.extra or {}).get("recipe")
    if not recipe:
        return None, "the weights name no recipe (pass --trained-on SPLIT)"
    path = Path(recipe) if Path(recipe).is_absolute() else REPO / recipe
    if not path.is_file():
        return None, f"the weights' recipe {recipe} is not in this checkout (pass --trained-on SPLIT)"
    from ..training.config import load_config

    d = load_config(str(path)).data
    if d.dataset != dataset_name:
        return [], f"recipe {recipe} trains on {d.dataset}, not {dataset_name}"
    ds = build_dataset(d.dataset, root, root / d.train_list if d.train_list else None, d.train_split)
    return _frames(dataset_name, ds.pairs), f"recipe {recipe} ({d.train_list or d.train_split})"


def fit(z, y, method: str):
    """(temperature, curve or None) fitted on N x C logits and N labels."""
    t = fit_temperature(z, y)
    if method == "temperature":
        return t, None
    conf, right = max_prob_and_correct(z.float(), y, t)
    return t, fit_isotonic(conf, right)


def cross_fitted_ece(halves, num_classes: int, method: str) -> dict:
    """ECE of the calibration fitted on one half of the frames, measured on the other, both ways
    round, averaged: {'before', 'temperature' (the fitted temperature alone), 'after'} (None when
    a half has no pixels)."""
    names = ("before", "temperature", "after")
    if any(y.numel() == 0 for _, y in halves):
        return dict.fromkeys(names)
    figures = []
    for (z_fit, y_fit), (z_test, y_test) in (halves, halves[::-1]):
        t, curve = fit(z_fit, y_fit, method)
        temps = {"before": 1.0, "temperature": t, "after": t}
        meter = CalibrationMeter(num_classes, temps, sample_per_frame=0, curves={"after": curve})
        meter.add_pixels(z_test, y_test)
        figures.append(meter.report()["ece"])
    return {k: round(sum(f[k] for f in figures) / len(figures), 5) for k in names}


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-calibrate", __doc__.strip().splitlines()[0], epilog=__doc__.split("\n", 1)[1])
    add(p, "dataset", required=True, choices=["camvid", "cityscapes", "ade20k"])
    add(p, "root", required=True)
    add(p, "split", note="the frames to fit on, ones the model never trained on (CamVid: heldout); or --list")
    add(p, "list", note="the frames to fit on, instead of --split")
    p.add_argument("--trained-on", help="the split the model trained on (default: read from its recipe)")
    add_model_args(p)
    add(p, "max_frames")
    p.add_argument(
        "--pixels-per-frame", type=int_range(100), default=20000, help="pixels sampled per frame for the fit"
    )
    p.add_argument(
        "--method",
        choices=["curve", "temperature"],
        default="curve",
        help="curve: a temperature, then a monotone curve fitted after it; temperature: the temperature "
        "alone (default: curve)",
    )
    p.add_argument("--write", action="store_true", help="store the calibration in the --weights file's metadata")
    p.add_argument(
        "--store-in",
        help="also store the calibration in this .safetensors file: a model of the same recipe trained "
        "on every frame, whose calibration is fitted through its held-out run (--weights) (default: none)",
    )
    p.add_argument(
        "--fitted-with",
        help="how the --store-in record names the --weights run, e.g. the recipe and iteration rather "
        "than a path on this machine (default: the --weights path)",
    )
    add(p, "json")
    return p


@extras_guard("bevanet-calibrate")
def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_input(p, "--store-in", args.store_in, "file")
    if args.store_in and not args.store_in.endswith(".safetensors"):
        p.error(f"--store-in takes .safetensors weights, not {args.store_in}")
    check_input(p, "--root", args.root, "dir")
    check_output_file(p, "--json", args.json, [args.root])
    if (args.split is None) == (args.list is None):
        p.error("give the frames to fit on: --split NAME or --list FILE (one of them)")
    if args.list:
        check_input(p, "--list", Path(args.root) / args.list, "file")
    if args.write and not args.weights:
        p.error("--write needs --weights: name the file to store the temperature in (the shipped one too)")
    if args.write and not args.weights.endswith(".safetensors"):
        p.error(
            f"--write stores the temperature in .safetensors weights, not {args.weights} (export after calibrating)"
        )
    apply_input_policy(args)
    root = Path(args.root)
    try:
        dataset = build_dataset(args.dataset, root, root / args.list if args.list else None, args.split or "val")
        image, _ = dataset[0]
        size = args.input_size or (((image.shape[1] + 7) // 8) * 8, ((image.shape[0] + 7) // 8) * 8)
        # the calibration describes the network, not one of its quantised copies: a checkpoint is
        # fitted in full precision unless --precision says otherwise (backend auto's int8 is
        # guarded to keep the float network's confidence)
        full = {} if args.precision != "auto" or is_exported_model(args.weights) else {"precision": "fp32"}
        seg = build_segmenter(args, input_size=size, **full)
        trained, how = training_frames(seg.info, args.dataset, root, args.trained_on)
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"bevanet-calibrate: error: {exc}", file=sys.stderr)
        return 2
    fit_frames = _frames(args.dataset, dataset.pairs)
    shared = sorted(set(fit_frames) & set(trained)) if trained is not None else None
    n = len(dataset) if args.max_frames is None else min(args.max_frames, len(dataset))
    # the first and the second half of the frames, kept apart for the cross-fitted figure
    meters = [
        CalibrationMeter(seg.info.num_classes, {"before": 1.0}, sample_per_frame=args.pixels_per_frame, seed=k)
        for k in range(2)
    ]
    start = time.perf_counter()
    for i in range(n):
        image, label = dataset[i]
        res = seg.segment(image, "rgb8", logits=True)
        meters[0 if i < (n + 1) // 2 else 1].update(seg.frame_logits(res.logits, image.shape[1], image.shape[0]), label)
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{n} frames", flush=True)
    halves = [m.sample() for m in meters]
    z, y = torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])
    try:
        t, curve = fit(z, y, args.method)
    except ValueError as exc:
        print(f"bevanet-calibrate: error: {exc}", file=sys.stderr)
        return 2
    # the fit's own figures, on the sampled pixels, before and after
    check = CalibrationMeter(
        seg.info.num_classes, {"before": 1.0, "after": t}, sample_per_frame=0, curves={"after": curve}
    )
    check.add_pixels(z, y)
    check.frames = n
    figures = check.report()
    crossed = cross_fitted_ece(halves, seg.info.num_classes, args.method)
    split_name = f"{args.dataset} {args.split or Path(args.list).name}"
    unseen = None if shared is None else not shared
    record = {
        "method": "temperature" if curve is None else "temperature+curve",
        "temperature": round(t, 4),
        "fitted_on": f"{split_name} ({n} frames: {', '.join(fit_frames)})",
        "split": args.split or str(args.list),
        "unseen": unseen,
        "shared_with_training": shared,
        "training_data": how,
        "ece_before": figures["ece"]["before"],
        "ece_after": figures["ece"]["after"],
        "ece_cross_fitted": crossed,
        "error_auroc_before": figures["error_auroc"]["before"],
        "error_auroc_after": figures["error_auroc"]["after"],
        "pixels": int(y.numel()),
    }
    if curve is not None:
        record[CURVE_KEY] = curve_record(curve)
    if unseen is False:
        record["note"] = (
            f"{split_name} is not unseen by this model: its training data holds "
            f"{'the drive' if args.dataset == 'camvid' else 'the frames'} {', '.join(shared)}; a temperature "
            "fitted where the model is at home may understate its error on new footage"
        )
    print(format_calibration(figures))
    fitted = f"temperature {t:.4f}" + ("" if curve is None else f" and a curve of {len(curve[0])} knots")
    print(f"{fitted} fitted on {int(y.numel())} pixels of {split_name} in {time.perf_counter() - start:.0f} s")
    if crossed["after"] is not None:
        print(
            f"cross-fitted (fitted on one half of the frames, measured on the other): ECE "
            f"{crossed['before'] * 100:.2f} % uncalibrated, {crossed['temperature'] * 100:.2f} % with the "
            f"temperature alone, {crossed['after'] * 100:.2f} % calibrated"
        )
    if unseen is None:
        print(f"whether the model saw these frames is unknown: {how}")
    elif not unseen:
        print(f"warning: {record['note']}")
    else:
        print(f"the model never trained on {split_name} ({how})")
    if args.write:
        info = seg.info
        info.extra = {**(info.extra or {}), CALIBRATION_KEY: record}
        try:
            write_safetensors_metadata(args.weights, info)
        except (OSError, ValueError) as exc:
            print(f"bevanet-calibrate: error: {exc}", file=sys.stderr)
            return 2
        print(f"stored in {args.weights} (metadata only; the tensors are unchanged)")
    if args.store_in:
        from ..checkpoint import read_checkpoint

        try:
            _, target = read_checkpoint(args.store_in)
            if target is None or target.num_classes != seg.info.num_classes:
                raise ValueError(
                    f"{args.store_in} is not a model of the same classes as {args.weights or 'the shipped one'}"
                )
            moved = {
                **record,
                "fitted_with": f"{args.fitted_with or args.weights or 'the shipped weights'}: a model of the same "
                f"recipe, trained without {split_name}",
                "note": f"fitted on {split_name} through the held-out run of the same recipe (this model's "
                "training data may hold those frames; the held-out run's does not"
                + ("" if unseen else f", which here it does: {record.get('note', how)}")
                + ")",
            }
            target.extra = {**(target.extra or {}), CALIBRATION_KEY: moved}
            write_safetensors_metadata(args.store_in, target)
        except (OSError, ValueError, CheckpointError) as exc:
            print(f"bevanet-calibrate: error: {exc}", file=sys.stderr)
            return 2
        print(f"stored in {args.store_in} as fitted through {args.weights} (metadata only)")
    if args.json:
        from ..evaluation.evaluate import write_json

        write_json({"calibration": record, **{k: figures[k] for k in ("ece", "error_auroc", "nll")}}, Path(args.json))
        print(f"report written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
