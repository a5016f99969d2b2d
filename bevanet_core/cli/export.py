"""bevanet-export: checkpoint -> ONNX (static shapes, metadata, explicit precision) -> TensorRT.

bevanet-export --weights model.safetensors --onnx model.onnx --input-size 1024x768
bevanet-export --input-size 480x360 --onnx m.fp16.onnx --precision fp16
bevanet-export --input-size 480x360 --onnx m.int8.onnx --precision int8 --calib-images camvid/train
bevanet-export --onnx m.int8.onnx --engine m.int8.engine    # strongly typed: the ONNX's precision
bevanet-export --onnx m.int8.onnx --openvino m.int8.xml     # OpenVINO IR, the ONNX's precision

The precision is written into the ONNX itself (fp16-typed tensors, or int8 Q/DQ nodes from
post-training quantization on real frames), so the same file runs on ONNX Runtime, OpenVINO and
TensorRT 10 and 11, whose strongly typed builder takes the precision from the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..export.precision import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES, ONNX_PRECISIONS
from .args import add, make_parser
from .common import configure_logging, extras_guard, require
from .validate import check_input, check_output_file, float_range, int_range


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-export", __doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_argument_group("ONNX export (needs --weights or the shipped default)")
    add(src, "weights", note="a checkpoint (.safetensors/.pt) here")
    add(src, "variant")
    add(
        src,
        "input_size",
        note="BEVANet and BEVANet-S pool their 1/64 feature map to 2x2, so its sides must be even: every "
        "multiple of 128 works, and so does e.g. 480x360 (1/64: 8x6), but not 320x240 (5x4) "
        "or 960x720 (15x12); the other networks take any multiple of 8. A size that cannot "
        "be exported is refused before exporting, naming the nearest one that can.",
    )
    add(src, "batch", note="a static batch")
    src.add_argument("--dynamic-batch", action="store_true", help="dynamic batch axis instead of a static one")
    src.add_argument("--opset", type=int_range(17, 30), default=17, help="ONNX opset (>= 17)")
    src.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convolutions before export")
    src.add_argument(
        "--exporter",
        default="torchscript",
        choices=["torchscript", "dynamo"],
        help="torch ONNX exporter (dynamo needs onnxscript)",
    )
    p.add_argument(
        "--onnx",
        required=True,
        help="ONNX file: written when --weights/--input-size are given or neither --engine nor --openvino is, "
        "else read",
    )
    add(
        p,
        "precision",
        default=None,
        choices=list(ONNX_PRECISIONS),
        help="precision written into the exported ONNX (default fp32); with --engine alone, "
        "the engine takes the ONNX's own precision and a different one is refused",
    )
    q = p.add_argument_group("int8 post-training quantization (--precision int8)")
    add(q, "calib_images")
    q.add_argument(
        "--calib-count",
        type=int_range(1),
        default=DEFAULT_CALIBRATION_IMAGES,
        help="frames used, spread over the folder",
    )
    q.add_argument(
        "--calib-method",
        default="percentile",
        choices=list(CALIBRATION_METHODS),
        help="activation range estimator",
    )
    add(q, "resize", note="the calibration frames")
    p.add_argument(
        "--openvino",
        default=None,
        metavar="MODEL.xml",
        help="also write an OpenVINO IR (.xml + .bin) of the ONNX model, at its precision (needs openvino)",
    )
    trt = p.add_argument_group("TensorRT engine (needs tensorrt and a GPU)")
    trt.add_argument("--engine", default=None, help="engine file to build from the ONNX model (default: none)")
    trt.add_argument(
        "--max-batch",
        type=int_range(1, 4096),
        default=1,
        help="largest batch of a dynamic-batch engine",
    )
    trt.add_argument(
        "--workspace-gib",
        type=float_range(0.0, 1024.0, lo_open=True),
        default=4.0,
        help="memory TensorRT may use while building, GiB",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what is exported, cached and built")
    return p


@extras_guard("bevanet-export")
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    export_needed = (
        (args.engine is None and args.openvino is None) or args.weights is not None or args.input_size is not None
    )
    check_input(parser, "--calib-images", args.calib_images, "dir")
    inputs = [p for p in (args.weights, args.calib_images) if p]
    if export_needed:
        check_output_file(parser, "--onnx", args.onnx, inputs)
    check_output_file(parser, "--engine", args.engine, inputs + [args.onnx])
    check_output_file(parser, "--openvino", args.openvino, inputs + [args.onnx])
    configure_logging(args.verbose)
    try:
        onnx_path = Path(args.onnx)
        if args.calib_images and args.precision != "int8":
            raise ValueError("--calib-images is only used with --precision int8")
        if args.precision == "int8" and not args.calib_images and export_needed:
            raise ValueError(
                "--precision int8 needs --calib-images: a folder of real frames from the "
                "deployment domain (e.g. the training images) to calibrate the Q/DQ scales"
            )
        if export_needed:
            require("bevanet-export", ("onnx",), "exporting to ONNX")
            meta = _export(args, onnx_path)
            w, h = meta.input_size
            print(
                f"wrote {onnx_path} ({meta.model_info['variant']}, {w}x{h}, {meta.precision}, "
                f"batch {'dynamic' if meta.dynamic_batch else meta.batch}, opset {meta.opset}) "
                f"and {onnx_path.name}.json"
            )
        elif not onnx_path.is_file():
            raise ValueError(f"--onnx {onnx_path} does not exist; give --weights to export it first")
        if args.openvino:
            require("bevanet-export", ("openvino",), "--openvino")
            from ..export.openvino import export_openvino_ir

            if args.precision and not export_needed:
                _check_file_precision(onnx_path, args.precision)
            meta = export_openvino_ir(onnx_path, args.openvino)
            print(f"wrote {args.openvino} ({meta.precision}) and {Path(args.openvino).name}.json")
        if args.engine:
            from ..export.tensorrt import build_engine

            meta = build_engine(
                onnx_path,
                args.engine,
                precision=args.precision,
                max_batch=args.max_batch,
                workspace_gib=args.workspace_gib,
            )
            print(
                f"wrote {args.engine} ({meta.precision}, strongly typed, "
                f"TensorRT {meta.versions.get('tensorrt')}, "
                f"compute capability {meta.device.get('compute_capability')}) "
                f"and {Path(args.engine).name}.json"
            )
    except ValueError as exc:  # CheckpointError and ArtifactError are ValueErrors
        print(f"bevanet-export: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the exporter's own failure: its first line, not its IR dump
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"bevanet-export: error: export failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return 2
    return 0


def _check_file_precision(onnx_path: Path, asked: str) -> None:
    from ..export.metadata import read_onnx_metadata

    have = read_onnx_metadata(onnx_path).precision
    if have != asked:
        raise ValueError(f"{onnx_path} is a {have} model but --precision {asked} was asked for")


def _export(args, onnx_path: Path):
    """Exports the checkpoint to `onnx_path` at the asked precision (fp32 export first)."""
    import tempfile

    from ..checkpoint import load_model
    from ..export.onnx import export_onnx
    from ..export.precision import convert_fp16, quantize_int8

    model, info = load_model(args.weights, variant=args.variant)
    precision = args.precision or "fp32"
    with tempfile.TemporaryDirectory(prefix="bevanet-export-") as tmp:
        fp32_path = onnx_path if precision == "fp32" else Path(tmp) / "fp32.onnx"
        meta = export_onnx(
            model,
            info,
            fp32_path,
            input_size=args.input_size,
            batch=args.batch,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            fold_bn=args.fold_bn,
            exporter=args.exporter,
        )
        if precision == "fp16":
            meta = convert_fp16(fp32_path, onnx_path)
        elif precision == "int8":
            meta = quantize_int8(
                fp32_path,
                onnx_path,
                args.calib_images,
                limit=args.calib_count,
                method=args.calib_method,
                resize=args.resize,
            )
    return meta


if __name__ == "__main__":
    sys.exit(main())
