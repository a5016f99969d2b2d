"""bevanet-bench: runtime latency/throughput with the authors' protocol as a reference.

    bevanet-bench --backend onnxruntime --json out.json        # the shipped model at its input size
    bevanet-bench --random-weights --variant bevanet --input-size 960x720

Without --weights it times the shipped model, like every other tool; --random-weights times a
seeded untrained network instead (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from ..imaging.geometry import parse_size
from ..options import UPSAMPLE_MODES
from .args import add, add_all, make_parser
from .common import configure_logging, extras_guard
from .validate import check_input, check_output_file, int_range


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-bench", __doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    m = p.add_argument_group("model")
    add(m, "weights")
    add(m, "random_weights")
    add(m, "variant")
    m.add_argument("--num-classes", type=int_range(1, 255), default=19, help="classes of the --random-weights network")
    add(m, "input_size", note="480x360 with --random-weights")
    add(m, "frame_size", note="the synthetic frames (default: the network input size)")
    add_all(m, "backend", "device", "precision", "threads", "resize")
    m.add_argument("--upsample", default="logits", choices=UPSAMPLE_MODES, help="what is upsampled to the frame")
    m.add_argument("--compile", action="store_true", help="torch.compile the torch backend's model")
    add(m, "calib_images", note="for int8 on onnxruntime/openvino")
    t = p.add_argument_group("timing")
    add_all(t, "batch", "runs", "warmup")
    t.add_argument("--no-reference", action="store_true", help="skip the authors' protocol reference")
    t.add_argument(
        "--cache-dir", default=None, help="where exported ONNX/engines are cached (default: the user cache folder)"
    )
    add(p, "json")
    add(p, "plot", note="the latencies, PNG or SVG by the suffix")
    return p


def bench_weights(args: argparse.Namespace) -> tuple[Optional[str], str]:
    """(the weights file to time, or None for a seeded untrained network; the variant)."""
    from ..checkpoint import DEFAULT_WEIGHTS

    if args.random_weights:
        if args.weights is not None:
            raise ValueError("--random-weights times an untrained network: drop --weights")
        return None, args.variant or "bevanet_s"
    if args.weights is None and not DEFAULT_WEIGHTS.is_file():
        raise ValueError(f"the shipped model {DEFAULT_WEIGHTS} is missing: give --weights or --random-weights")
    if args.weights is None and args.variant is not None:
        from ..checkpoint import read_checkpoint

        shipped = read_checkpoint(DEFAULT_WEIGHTS)[1]
        if shipped is not None and shipped.variant != args.variant:
            raise ValueError(
                f"the shipped model is {shipped.variant}, not {args.variant}: time an untrained "
                f"{args.variant} with --random-weights, or give its --weights"
            )
    return str(args.weights or DEFAULT_WEIGHTS), args.variant


def default_input_size(weights: Optional[str]) -> tuple[int, int]:
    """The input size the weights were trained or exported for (480x360 without weights)."""
    if weights is not None and Path(weights).suffix in (".safetensors", ".pt", ".pth"):
        from ..checkpoint import read_checkpoint

        info = read_checkpoint(weights)[1]
        if info is not None and info.input_size is not None:
            return tuple(info.input_size)
    return (480, 360)


@extras_guard("bevanet-bench")
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_input(parser, "--weights", args.weights, "file")
    check_input(parser, "--calib-images", args.calib_images, "dir")
    check_output_file(parser, "--json", args.json)
    check_output_file(parser, "--plot", args.plot)
    configure_logging()
    from ..runtime.benchmark import BenchConfig, plot_reports, run_benchmark

    try:
        weights, variant = bench_weights(args)
        size = parse_size(args.input_size, "--input-size", 8) if args.input_size else default_input_size(weights)
        frame = parse_size(args.frame_size, "--frame-size") if args.frame_size else None
        report = run_benchmark(
            BenchConfig(
                variant=variant,
                size=size,
                frame_size=frame,
                backend=args.backend,
                device=args.device,
                precision=args.precision,
                batch=args.batch,
                runs=args.runs,
                warmup=args.warmup,
                weights=weights,
                num_classes=args.num_classes,
                resize=args.resize,
                upsample=args.upsample,
                compile=args.compile,
                reference=not args.no_reference,
                cache_dir=args.cache_dir,
                threads=args.threads,
                calibration_images=str(args.calib_images) if args.calib_images else None,
            )
        )
    except ValueError as exc:
        print(f"bevanet-bench: error: {exc}", file=sys.stderr)
        return 2
    lat = report["latency_ms"]
    print(
        f"{report['variant']} {size[0]}x{size[1]} {report['backend']}/{report['device']}/{report['precision']} "
        f"{report['threads']} thread(s) "
        f"batch {args.batch}: p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  "
        f"p99 {lat['p99']:.2f} ms  {report['fps']:.1f} fps "
        f"(frame in host memory -> mask in host memory)"
    )
    if "reference" in report:
        ref = report["reference"]["latency_ms"]
        print(
            f"  authors' protocol (fp32 eager, batch 1, no upsampling): p50 {ref['p50']:.2f} ms  "
            f"p90 {ref['p90']:.2f} ms  p99 {ref['p99']:.2f} ms  "
            f"{report['reference']['fps']:.1f} fps"
        )
    if args.json:
        from ..paths import atomic_write

        text = json.dumps(report, indent=2)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text + "\n"))
    if args.plot:
        plot_reports(
            [report],
            str(args.plot),
            f"{report['variant']} {size[0]}x{size[1]} on {report['environment']['cpu']}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
