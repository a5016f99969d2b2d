"""Command-line pieces shared by the tools that run the node's runtime (eval, predict, bag-eval, demo)."""
from __future__ import annotations

import argparse

from ..names import BACKENDS, PRECISIONS, RESIZE_MODES
from ..serving.policy import MAX_PIXELS, parse_max_pixels, set_max_pixels
from .validate import int_range


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Model / runtime options, named like the node's parameters."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--weights",
        default=None,
        help="checkpoint (.safetensors/.pt), .onnx or TensorRT engine; default: the shipped model",
    )
    g.add_argument("--variant", default=None, help="expected variant (checked against the weights)")
    g.add_argument("--backend", default="torch", choices=BACKENDS)
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default: cpu)")
    g.add_argument("--precision", default="fp32", choices=PRECISIONS)
    g.add_argument(
        "--input-size", default=None, help="network input WxH, multiples of 8 (default: from the weights)"
    )
    g.add_argument("--resize", default="stretch", choices=RESIZE_MODES)
    g.add_argument(
        "--threads",
        type=int_range(1, 4096),
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )
    g.add_argument(
        "--allow-nonfinite-weights",
        action="store_true",
        help="accept weights holding NaN or inf (research only; refused by default)",
    )
    add_input_policy_args(p)


def add_input_policy_args(p: argparse.ArgumentParser) -> None:
    """The input policy's pixel cap (frames above it are refused before decoding)."""
    p.add_argument(
        "--max-pixels",
        type=_max_pixels_arg,
        default=None,
        help=f"largest frame decoded, width*height (default {MAX_PIXELS}, or $BEVANET_MAX_PIXELS)",
    )


def _max_pixels_arg(text: str) -> int:
    try:
        return parse_max_pixels(text, "--max-pixels")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def apply_input_policy(args: argparse.Namespace) -> None:
    """Sets the process-wide pixel cap from --max-pixels, when given."""
    if getattr(args, "max_pixels", None) is not None:
        set_max_pixels(args.max_pixels)


def build_segmenter(args: argparse.Namespace, **overrides):
    """The node's runtime configured from the command line (`overrides` replace config fields)."""
    from ..runtime import Segmenter, SegmenterConfig

    apply_input_policy(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    fields = dict(weights=args.weights, variant=args.variant, backend=args.backend, device=args.device,
                  precision=args.precision, input_size=args.input_size, resize=args.resize,
                  allow_nonfinite=getattr(args, "allow_nonfinite_weights", False))
    fields.update(overrides)
    return Segmenter(SegmenterConfig(**fields))
