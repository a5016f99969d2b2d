"""bevanet-export: checkpoint -> ONNX (static shapes, metadata) -> TensorRT engine.

bevanet-export --weights model.safetensors --onnx model.onnx --size 960x720
bevanet-export --onnx model.onnx --engine model.engine --precision int8 --calib-images camvid/train
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from ..imaging.geometry import RESIZE_MODES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bevanet-export", description=__doc__.splitlines()[0])
    src = p.add_argument_group("ONNX export (needs --weights or the shipped default)")
    src.add_argument(
        "--weights", default=None, help="checkpoint (.safetensors/.pt); default: the shipped model"
    )
    src.add_argument("--variant", default=None, help="expected variant (checked against the file)")
    src.add_argument(
        "--size",
        default=None,
        help="network input WxH, multiples of 8 (default: from the weights)",
    )
    src.add_argument("--batch", type=int, default=1, help="static batch (default 1)")
    src.add_argument(
        "--dynamic-batch", action="store_true", help="dynamic batch axis instead of a static one"
    )
    src.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    src.add_argument(
        "--fold-bn", action="store_true", help="fold BatchNorm into convolutions before export"
    )
    src.add_argument(
        "--exporter",
        default="torchscript",
        choices=["torchscript", "dynamo"],
        help="torch ONNX exporter (default torchscript; dynamo needs onnxscript)",
    )
    p.add_argument(
        "--onnx",
        required=True,
        help="ONNX file: written when --weights/--size are given or --engine is absent, else read",
    )
    trt = p.add_argument_group("TensorRT engine (needs tensorrt and a GPU)")
    trt.add_argument("--engine", default=None, help="engine file to build from the ONNX model")
    trt.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    trt.add_argument(
        "--max-batch", type=int, default=1, help="largest batch of a dynamic-batch engine"
    )
    trt.add_argument(
        "--calib-images", default=None, help="folder of real frames for int8 entropy calibration"
    )
    trt.add_argument(
        "--calib-cache",
        default=None,
        help="int8 calibration cache (read if present, else written)",
    )
    trt.add_argument(
        "--calib-batch", type=int, default=8, help="calibration batch size (default 8)"
    )
    trt.add_argument(
        "--resize", default="stretch", choices=RESIZE_MODES, help="calibration preprocessing"
    )
    trt.add_argument("--workspace-gib", type=float, default=4.0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        onnx_path = Path(args.onnx)
        export_needed = args.engine is None or args.weights is not None or args.size is not None
        if export_needed:
            from ..checkpoint import load_model
            from ..export.onnx import export_onnx

            model, info = load_model(args.weights, variant=args.variant)
            meta = export_onnx(
                model,
                info,
                onnx_path,
                input_size=args.size,
                batch=args.batch,
                dynamic_batch=args.dynamic_batch,
                opset=args.opset,
                fold_bn=args.fold_bn,
                exporter=args.exporter,
            )
            w, h = meta.input_size
            print(
                f"wrote {onnx_path} ({meta.model_info['variant']}, {w}x{h}, "
                f"batch {'dynamic' if meta.dynamic_batch else meta.batch}, opset {meta.opset}) "
                f"and {onnx_path.name}.json"
            )
        elif not onnx_path.is_file():
            raise ValueError(
                f"--onnx {onnx_path} does not exist; give --weights to export it first"
            )
        if args.engine:
            from ..export.tensorrt import build_engine

            meta = build_engine(
                onnx_path,
                args.engine,
                precision=args.precision,
                max_batch=args.max_batch,
                calibration_images=args.calib_images,
                calibration_cache=args.calib_cache,
                calibration_batch=args.calib_batch,
                resize=args.resize,
                workspace_gib=args.workspace_gib,
            )
            print(
                f"wrote {args.engine} ({meta.precision}, "
                f"TensorRT {meta.versions.get('tensorrt')}, "
                f"compute capability {meta.device.get('compute_capability')}) "
                f"and {Path(args.engine).name}.json"
            )
    except ValueError as exc:  # CheckpointError and ArtifactError are ValueErrors
        print(f"bevanet-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
