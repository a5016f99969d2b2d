"""bevanet-bench: runtime latency/throughput with the authors' protocol as a reference.

bevanet-bench --variant bevanet_s --size 480x360 --backend onnxruntime --device cpu --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from ..imaging.geometry import RESIZE_MODES, parse_size
from ..imaging.processing import UPSAMPLE_MODES
from ..models import list_models
from ..options import DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_PRECISION
from ..runtime.backend import PRECISIONS
from ..runtime.segmenter import BACKENDS
from .common import configure_logging, extras_guard
from .validate import check_input, check_output_file, int_range


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bevanet-bench", description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="bevanet_s", choices=list_models())
    p.add_argument("--size", default="480x360", help="network input WxH, multiples of 8 (default 480x360)")
    p.add_argument("--frame-size", default=None, help="camera frame WxH (default: the network size)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="(default: the node's, %(default)s)")
    p.add_argument("--device", default=DEFAULT_DEVICE, help="cpu, cuda or cuda:N")
    p.add_argument(
        "--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help="(default: the node's, %(default)s)"
    )
    p.add_argument("--batch", type=int, default=1, help="frames per inference (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up runs (default 10)")
    p.add_argument("--weights", default=None, help="checkpoint/ONNX/engine (default: seeded random weights)")
    p.add_argument("--num-classes", type=int_range(1, 255), default=19, help="classes of the random model (default 19)")
    p.add_argument("--resize", default="stretch", choices=RESIZE_MODES)
    p.add_argument("--upsample", default="logits", choices=UPSAMPLE_MODES)
    p.add_argument("--compile", action="store_true", help="torch.compile the torch backend's model")
    p.add_argument(
        "--threads",
        type=int_range(1, 4096),
        default=None,
        help="CPU threads for every backend and the reference (default: the node's, half the cores this "
        "process may use, 1 to 4)",
    )
    p.add_argument(
        "--calib-images",
        default=None,
        help="folder of real frames: int8 on onnxruntime/openvino quantizes with them",
    )
    p.add_argument("--no-reference", action="store_true", help="skip the authors' protocol reference")
    p.add_argument("--cache-dir", default=None, help="where exported ONNX/engines are cached")
    p.add_argument("--json", default=None, help="write the report as JSON here")
    p.add_argument("--plot", default=None, help="write a latency plot (PNG/SVG) here")
    return p


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
        size = parse_size(args.size, "--size", 8)
        frame = parse_size(args.frame_size, "--frame-size") if args.frame_size else None
        if args.batch < 1 or args.runs < 1 or args.warmup < 0:
            raise ValueError("--batch and --runs must be at least 1 and --warmup at least 0")
        report = run_benchmark(
            BenchConfig(
                variant=args.variant,
                size=size,
                frame_size=frame,
                backend=args.backend,
                device=args.device,
                precision=args.precision,
                batch=args.batch,
                runs=args.runs,
                warmup=args.warmup,
                weights=args.weights,
                num_classes=args.num_classes,
                resize=args.resize,
                upsample=args.upsample,
                compile=args.compile,
                reference=not args.no_reference,
                cache_dir=args.cache_dir,
                threads=args.threads,
                calibration_images=args.calib_images,
            )
        )
    except ValueError as exc:
        print(f"bevanet-bench: error: {exc}", file=sys.stderr)
        return 2
    lat = report["latency_ms"]
    print(
        f"{args.variant} {size[0]}x{size[1]} {report['backend']}/{report['device']}/{report['precision']} "
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
            args.plot,
            f"{args.variant} {size[0]}x{size[1]} on {report['environment']['cpu']}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
