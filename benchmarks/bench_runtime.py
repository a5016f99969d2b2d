#!/usr/bin/env python3
"""CPU benchmark matrix of the runtime, and the upsampling-order study.

    python benchmarks/bench_runtime.py --threads 1   # BEVANet-S 480x360, every backend x precision
    python benchmarks/bench_runtime.py --upsample-study --weights run/last.pt --frames 20

The matrix holds every installed CPU backend at every precision it runs (torch fp32/bf16,
onnxruntime fp32/fp16/int8, openvino fp32/bf16/int8; int8 calibrated on `--calib-images`,
CamVid train by default) and the authors' protocol, all built once and then timed call by call in
turn (`--runs` x `--repeats` rounds, each timing every row once), so that a change in a shared
machine's load hits every row alike. Rows are frame in host memory -> mask at the frame's
resolution; speed-up = the authors' p50 / the row's p50, from the same rounds.

The study runs the network once per CamVid val frame and post-processes the same logits both
ways: bilinear logits then argmax ('logits') vs argmax at 1/8 then nearest labels ('labels'),
reporting mIoU against the ground truth, agreement, and post-processing cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bevanet_core.hardware import machine
from bevanet_core.runtime.benchmark import plot_reports
from bevanet_core.timing import summarize, time_call

CPU_MATRIX = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "fp16"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
]


def available_matrix(calibration: bool):
    """(backend, precision) rows this machine can run, and the skipped ones with the reason."""
    import importlib.util

    rows, skipped = [], []
    for backend, precision in CPU_MATRIX:
        if backend != "torch" and importlib.util.find_spec(backend) is None:
            skipped.append((backend, precision, f"{backend} not installed"))
        elif precision == "int8" and not calibration:
            skipped.append((backend, precision, "no calibration frames (--calib-images)"))
        elif backend == "openvino" and precision == "bf16":
            from bevanet_core.runtime.openvino_backend import cpu_capabilities

            if "BF16" not in cpu_capabilities():
                skipped.append((backend, precision, "the CPU has no bf16 arithmetic"))
            else:
                rows.append((backend, precision))
        else:
            rows.append((backend, precision))
    return rows, skipped


def build_rows(args, size, calib):
    """{(backend, precision): Segmenter} for every row, and the authors' fp32 eager model."""
    from bevanet_core.runtime import Segmenter, SegmenterConfig
    from bevanet_core.runtime.benchmark import BenchConfig, _model

    matrix, skipped = available_matrix(calib is not None)
    for backend, precision, why in skipped:
        print(f"  skipping {backend} {precision}: {why}", flush=True)
    model, info = _model(
        BenchConfig(variant=args.variant, size=size, weights=args.weights, num_classes=args.num_classes)
    )
    segs = {}
    for backend, precision in matrix:
        cfg = SegmenterConfig(
            backend=backend,
            precision=precision,
            input_size=size,
            num_threads=args.threads,
            cache_dir=args.cache_dir,
            calibration_images=calib,
            max_batch=1,
        )
        t0 = time.perf_counter()
        segs[(backend, precision)] = Segmenter.from_model(model, info, **vars(cfg))
        print(f"  built {backend} {precision} in {time.perf_counter() - t0:.1f} s", flush=True)
    return segs, model.float().eval()


def run_matrix(args) -> list[dict[str, Any]]:
    """Every row and the authors' protocol timed call by call in turn (one call each per round),
    so that the shared machine's changing load hits all of them alike."""
    size = tuple(int(v) for v in args.size.split("x"))
    calib = args.calib_images if args.calib_images and Path(args.calib_images).is_dir() else None
    segs, reference_model = build_rows(args, size, calib)
    frame = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    x = torch.randn(1, 3, size[1], size[0])

    def reference():
        with torch.no_grad():
            reference_model(x)

    calls = {row: (lambda s=s: s.segment(frame)) for row, s in segs.items()}
    calls[("authors", "fp32")] = reference
    times: dict[tuple[str, str], list[float]] = {row: [] for row in calls}
    stages: dict[tuple[str, str], dict[str, list[float]]] = {row: {} for row in segs}
    for _ in range(args.warmup):
        for call in calls.values():
            call()
    for _ in range(args.runs * args.repeats):
        for row, call in calls.items():
            ms, out = time_call(call)
            times[row].append(ms)
            if out is not None:
                for k, v in out.timings.items():
                    stages[row].setdefault(k, []).append(v)
    ref = summarize(times[("authors", "fp32")])
    ref["protocol"] = "authors: random input, batch 1, fp32 eager, BN not fused, no upsampling"
    results = []
    for row, seg in segs.items():
        backend, precision = row
        rep = summarize(times[row])
        rep.update(
            backend=backend,
            precision=precision,
            size=list(size),
            stages_ms_p50={k: float(np.median(v)) for k, v in stages[row].items()},
            speedup_vs_reference=ref["latency_ms"]["p50"] / rep["latency_ms"]["p50"],
            reference=ref,
        )
        results.append(rep)
        seg.close()
    return results


def print_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| path | p50 ms | p90 ms | p99 ms | FPS | x authors | pre / infer / post ms (p50) |",
        "|---|---|---|---|---|---|---|",
    ]
    ref = results[0]["reference"]
    lines.append(
        f"| authors' protocol (model only: fp32 eager, BN unfused, no upsampling) | "
        f"{ref['latency_ms']['p50']:.1f} | {ref['latency_ms']['p90']:.1f} | "
        f"{ref['latency_ms']['p99']:.1f} | {ref['fps']:.2f} | 1.00 | - |"
    )
    for r in results:
        lat, st = r["latency_ms"], r["stages_ms_p50"]
        lines.append(
            f"| {r['backend']} {r['precision']} (frame -> mask) | {lat['p50']:.1f} | "
            f"{lat['p90']:.1f} | {lat['p99']:.1f} | {r['fps']:.2f} | "
            f"{r['speedup_vs_reference']:.2f} | {st['preprocess']:.1f} / {st['inference']:.1f} / "
            f"{st['postprocess']:.1f} |"
        )
    best = max(results, key=lambda r: r["fps"])
    table = "\n".join(lines)
    print(table)
    print(
        f"best pipeline: {best['backend']} {best['precision']}, "
        f"{best['speedup_vs_reference']:.2f}x the authors' protocol"
    )
    return table


def upsample_study(args) -> dict[str, Any]:
    """Same logits, two read-back orders: accuracy against CamVid labels and cost."""
    from PIL import Image

    from bevanet_core.checkpoint import load_model
    from bevanet_core.data.classes import CAMVID_VOID
    from bevanet_core.evaluation.metrics import ConfusionMatrix
    from bevanet_core.imaging.geometry import plan_resize
    from bevanet_core.imaging.processing import Postprocessor, preprocess

    model, info = load_model(args.weights, variant=args.variant)
    root = Path(args.data) / "camvid"
    pairs = [line.split() for line in (root / "val.lst").read_text().splitlines() if line.strip()]
    pairs = pairs[:: max(1, len(pairs) // args.frames)][: args.frames]
    size = tuple(int(v) for v in args.size.split("x"))
    modes = {"logits": Postprocessor("logits"), "labels": Postprocessor("labels")}
    cms = {m: ConfusionMatrix(info.num_classes) for m in modes}
    cost = {m: [] for m in modes}
    cost_big = {m: [] for m in modes}
    agree, total = 0, 0
    dev = torch.device("cpu")
    for img_rel, lbl_rel in pairs:
        rgb = np.asarray(Image.open(root / img_rel).convert("RGB"))
        label = np.asarray(Image.open(root / lbl_rel)).astype(np.uint8).copy()
        label[label == CAMVID_VOID] = 255
        plan = plan_resize((rgb.shape[1], rgb.shape[0]), size, "stretch")
        x = preprocess([(torch.from_numpy(rgb.copy()), "rgb8")], [plan], info.mean, info.std, dev)
        with torch.no_grad():
            logits = model(x)
        masks = {}
        for m, post in modes.items():
            ms, out = time_call(lambda post=post, x=logits, p=plan: post(x, [p])[0][0].numpy())
            masks[m] = out
            cost[m].append(ms)
            cms[m].update(masks[m], label)
            # the same logits read back at a 1920x1080 camera frame, where the costs differ
            big = plan_resize((1920, 1080), size, "stretch")
            cost_big[m].append(time_call(lambda post=post, x=logits, p=big: post(x, [p]))[0])
        agree += int((masks["logits"] == masks["labels"]).sum())
        total += masks["logits"].size
    out = {
        "frames": len(pairs),
        "network_size": list(size),
        "weights": str(args.weights),
        "agreement": agree / total,
    }
    for m in modes:
        out[m] = {
            "miou": cms[m].miou(),
            "pixel_accuracy": cms[m].pixel_accuracy(),
            "postprocess_ms_p50_480x360": float(np.median(cost[m])),
            "postprocess_ms_p50_1920x1080": float(np.median(cost_big[m])),
        }
    print(json.dumps(out, indent=2))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="bevanet_s")
    p.add_argument("--size", default="480x360")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=11)
    p.add_argument("--weights", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every backend")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument(
        "--calib-images",
        default=None,
        help="frames for the int8 rows' calibration (default: <data>/camvid/train)",
    )
    p.add_argument("--upsample-study", action="store_true")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument(
        "--data",
        default=os.environ.get("BEVANET_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")),
    )
    args = p.parse_args(argv)
    if args.calib_images is None:
        args.calib_images = str(Path(args.data) / "camvid" / "train")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.upsample_study:
        result: Any = upsample_study(args)
    else:
        results = run_matrix(args)
        table = print_table(results)
        result = {"environment": machine("cpu"), "results": results, "table": table}
        if args.plot:
            plot_reports(results, args.plot, f"{args.variant} {args.size}, {machine('cpu')['cpu']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
