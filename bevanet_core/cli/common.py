"""Command-line pieces shared by the tools that run the node's runtime (eval, predict, bag-eval, demo)."""
from __future__ import annotations

import argparse

from ..runtime.backend import PRECISIONS
from ..imaging.geometry import RESIZE_MODES
from ..runtime.segmenter import BACKENDS


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
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )


def build_segmenter(args: argparse.Namespace, **overrides):
    """The node's runtime configured from the command line (`overrides` replace config fields)."""
    from ..runtime import Segmenter, SegmenterConfig

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    fields = dict(weights=args.weights, variant=args.variant, backend=args.backend, device=args.device,
                  precision=args.precision, input_size=args.input_size, resize=args.resize)
    fields.update(overrides)
    return Segmenter(SegmenterConfig(**fields))
