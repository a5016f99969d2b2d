#!/usr/bin/env python3
"""fp32 vs fp16 vs int8 ONNX on CamVid val through ONNX Runtime (CPU): parity and mIoU.

    python benchmarks/bench_precision.py                       # the shipped model, 480x360
    python benchmarks/bench_precision.py --weights run/best.safetensors --json prec.json

Exports the model to fp32 ONNX, converts it to fp16 and quantizes it to int8 Q/DQ (calibrated on
CamVid *train* frames), then runs all three on every val frame with the runtime's own
preprocessing and post-processing. Reports per precision: mIoU and per-class IoU against the
labels, and against fp32: max |logit| difference, argmax agreement (at the network's output
resolution) and the mIoU change. Speed is `bench_runtime.py`'s job, not this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bevanet_core.checkpoint import load_model
from bevanet_core.data.classes import CAMVID_VOID
from bevanet_core.data.datasets import read_image, read_pair_list
from bevanet_core.evaluation.metrics import ConfusionMatrix
from bevanet_core.export.metadata import read_onnx_metadata
from bevanet_core.export.onnx import export_onnx
from bevanet_core.export.precision import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_IMAGES,
    convert_fp16,
    network_input,
    quantize_int8,
)
from bevanet_core.hardware import machine
from bevanet_core.imaging.processing import Postprocessor

PRECISIONS = ("fp32", "fp16", "int8")
ALL_CONVS = "int8, every conv quantized"  # the --all-convs ablation row


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def make_artifacts(args, out: Path):
    model, info = load_model(args.weights, variant=args.variant)
    paths = {p: out / f"{info.variant}-{args.size}-{p}.onnx" for p in PRECISIONS}
    t0 = time.perf_counter()
    export_onnx(model, info, paths["fp32"], input_size=args.size)
    convert_fp16(paths["fp32"], paths["fp16"])
    t1 = time.perf_counter()
    meta = quantize_int8(
        paths["fp32"],
        paths["int8"],
        Path(args.data) / "camvid" / "train",
        limit=args.calib_images,
        method=args.calib_method,
    )
    t2 = time.perf_counter()
    print(
        f"exported fp32+fp16 in {t1 - t0:.0f} s, int8 ({args.calib_images} train frames, "
        f"{args.calib_method}) in {t2 - t1:.0f} s; float nodes: {meta.extra['float_nodes']}",
        flush=True,
    )
    if args.all_convs:
        paths[ALL_CONVS] = out / f"{info.variant}-{args.size}-int8-all-convs.onnx"
        quantize_int8(
            paths["fp32"],
            paths[ALL_CONVS],
            Path(args.data) / "camvid" / "train",
            limit=args.calib_images,
            method=args.calib_method,
            keep_float=[],
        )
    return info, paths


def evaluate(args, info, paths):
    root = Path(args.data) / "camvid"
    pairs = read_pair_list(root, root / "val.lst")[: args.frames or None]
    kinds = list(paths)
    sessions = {p: session(paths[p], args.threads) for p in kinds}
    meta = read_onnx_metadata(paths["fp32"])
    post = Postprocessor("logits")
    cms = {p: ConfusionMatrix(info.num_classes) for p in kinds}
    max_diff = {p: 0.0 for p in kinds}
    agree = {p: 0 for p in kinds}
    total = 0
    for image_path, label_path in pairs:
        rgb = read_image(image_path)
        label = np.asarray(Image.open(label_path)).astype(np.uint8).copy()
        label[label == CAMVID_VOID] = 255
        x, plan = network_input(rgb, meta)
        logits = {}
        for p, s in sessions.items():
            logits[p] = s.run(None, {s.get_inputs()[0].name: x})[0]
            mask = post(torch.from_numpy(logits[p]), [plan])[0][0].numpy()
            cms[p].update(mask, label)
        ref = logits["fp32"].argmax(1)
        for p in kinds:
            max_diff[p] = max(max_diff[p], float(np.abs(logits[p] - logits["fp32"]).max()))
            agree[p] += int((logits[p].argmax(1) == ref).sum())
        total += ref.size
    base = cms["fp32"].miou()
    rows = {}
    for p in kinds:
        d = cms[p].as_dict(info.class_names)
        rows[p] = {
            "miou": d["miou"],
            "pixel_accuracy": d["pixel_accuracy"],
            "per_class_iou": d["per_class_iou"],
            "miou_change": d["miou"] - base,
            "max_abs_logit_diff_vs_fp32": max_diff[p],
            "argmax_agreement_vs_fp32": agree[p] / total,
            "file": str(paths[p]),
            "file_mb": paths[p].stat().st_size / 1e6,
        }
    return {"frames": len(pairs), "results": rows}


def markdown(report) -> str:
    res = report["results"]
    names = list(res["fp32"]["per_class_iou"])
    lines = [
        "| precision | mIoU | change | max abs logit diff | argmax agreement | MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p, r in res.items():
        lines.append(
            f"| {p} | {r['miou']:.2f} | {r['miou_change']:+.2f} | "
            f"{r['max_abs_logit_diff_vs_fp32']:.4f} | "
            f"{100 * r['argmax_agreement_vs_fp32']:.2f}% | "
            f"{r['file_mb']:.1f} |"
        )
    lines += ["", "| precision | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for p, r in res.items():
        cells = ["n/a" if r["per_class_iou"][n] is None else f"{r['per_class_iou'][n]:.2f}" for n in names]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--variant", default=None)
    p.add_argument("--size", default="480x360", help="network input WxH")
    p.add_argument("--frames", type=int, default=0, help="val frames (0 = all 101)")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    p.add_argument("--calib-method", default="percentile", choices=CALIBRATION_METHODS)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--all-convs",
        action="store_true",
        help="also an int8 model with every conv quantized (attention gates and classifier too)",
    )
    p.add_argument("--out", default="runs/precision", help="folder for the ONNX files")
    p.add_argument("--json", default=None)
    p.add_argument(
        "--data",
        default=os.environ.get("BEVANET_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")),
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info, paths = make_artifacts(args, out)
    report = evaluate(args, info, paths)
    report.update(
        weights=args.weights or "shipped",
        size=args.size,
        calibration={"images": args.calib_images, "method": args.calib_method, "split": "train"},
        environment=machine("cpu"),
    )
    report["table"] = markdown(report)
    print(report["table"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
