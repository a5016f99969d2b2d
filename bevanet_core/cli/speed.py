"""bevanet-speed: the authors' speed protocol and the project's fast paths, side by side in one run.

The authors' protocol (models/speed in their repository): random input on the device, batch 1,
fp32 eager PyTorch, BN not fused, cudnn.benchmark off, warm-up, synchronised timing, final
upsampling excluded. The project's paths are timed end to end instead (uint8 frame in host
memory -> uint8 mask in host memory at the frame's resolution), which includes more work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Optional

import torch

from ..export.sizes import ExportSizeError
from ..hardware import machine
from ..imaging.geometry import parse_size
from ..runtime.benchmark import BenchConfig, _model, reference_protocol, run_benchmark
from .args import add, add_all, make_parser
from .bench import bench_weights, default_input_size
from .common import configure_logging, extras_guard
from .validate import check_input, check_output_file


def fast_paths(device: str) -> list[tuple[str, str]]:
    """(backend, precision) pairs worth timing on this device."""
    if device.startswith("cuda"):
        paths = [("torch", "fp16"), ("torch", "bf16")]
        try:
            import tensorrt  # noqa: F401

            paths.append(("tensorrt", "fp16"))
        except ImportError:
            pass
        return paths
    paths = [("torch", "fp32"), ("onnxruntime", "fp32")]
    if torch.backends.mkldnn.is_available():
        paths.insert(1, ("torch", "bf16"))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-speed", __doc__.strip().splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    add(p, "weights")
    add(p, "random_weights")
    add(p, "variant")
    add(p, "input_size", note="480x360 with --random-weights")
    add_all(p, "device", "threads")
    add(p, "runs", default=20)
    add(p, "warmup")
    p.add_argument(
        "--paths",
        nargs="*",
        metavar="BACKEND:PRECISION",
        help="fast paths to time (default: the best ones for the device)",
    )
    add(p, "json", note="all figures")
    return p


@extras_guard("bevanet-speed")
def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_input(p, "--weights", args.weights, "file")
    check_output_file(p, "--json", args.json)
    configure_logging()
    try:
        weights, variant = bench_weights(args)
        size = parse_size(args.input_size, "--input-size", 8) if args.input_size else default_input_size(weights)
    except ValueError as exc:
        p.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [tuple(s.split(":", 1)) for s in args.paths] if args.paths else fast_paths(args.device)
    base = BenchConfig(
        variant=variant,
        size=size,
        device=args.device,
        runs=args.runs,
        warmup=args.warmup,
        weights=weights,
        threads=args.threads,
        reference=False,
    )
    model, info = _model(base)
    rows = [
        ("authors' protocol", "torch", "fp32", reference_protocol(model, size, args.device, args.runs, args.warmup))
    ]
    skipped = []
    for backend, precision in paths:
        try:
            rep = run_benchmark(dataclasses.replace(base, backend=backend, precision=precision))
        except ExportSizeError as exc:  # an exported path cannot take this size; the others still run
            skipped.append({"backend": backend, "precision": precision, "reason": str(exc)})
            print(f"skipped {backend} {precision}: {exc}")
            continue
        rows.append(("bevanet_ros runtime", backend, precision, rep))
    ref_fps = rows[0][3]["fps"]
    print(f"{info.variant} at {size[0]}x{size[1]}, device {args.device}, batch 1")
    print(f"{'path':<22}{'backend':<13}{'prec.':<7}{'p50 ms':>9}{'p90 ms':>9}{'FPS':>9}{'x ref':>7}")
    for name, backend, precision, rep in rows:
        lat = rep["latency_ms"]
        print(
            f"{name:<22}{backend:<13}{precision:<7}{lat['p50']:9.1f}{lat['p90']:9.1f}{rep['fps']:9.2f}"
            f"{rep['fps'] / ref_fps:7.2f}"
        )
    if args.json:
        out = {
            "variant": info.variant,
            "weights": weights or f"seeded random {variant}",
            "size": list(size),
            "device": args.device,
            "reference": rows[0][3],
            "paths": [r[3] for r in rows[1:]],
            "skipped": skipped,
            "environment": machine(args.device),
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
