#!/usr/bin/env python3
"""Wall time and peak memory of one very large camera frame through the node's segmentation
step (`StreamSegmenter.segment_messages`: decode + segment), in this process.

    python scripts/large_frame_cost.py --size 8000x6000

A seeded BEVANet-S with a 64x64 network input stands in for the model: the cost measured is the
frame's (decoding, resizing, and the full-resolution upsampling of the logits), not the
network's. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="8000x6000", help="frame WxH")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from bevanet_core.checkpoint import ModelInfo
    from bevanet_core.models import build_model
    from bevanet_core.runtime import Segmenter
    from bevanet_core.serving.stream import StreamSegmenter

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, height = (int(v) for v in args.size.lower().split("x"))
    info = ModelInfo.default("bevanet_s", 11)
    seg = Segmenter.from_model(
        build_model("bevanet_s", num_classes=11).eval(), info, backend="torch", input_size=(64, 64)
    )
    stream = StreamSegmenter(seg, ["cam"])
    msg = SimpleNamespace(
        encoding="rgb8",
        height=height,
        width=width,
        step=width * 3,
        is_bigendian=0,
        data=np.zeros(width * height * 3, np.uint8),
        header=None,
    )
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = stream.segment_messages([(0, msg, time.monotonic())])
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "size": f"{width}x{height}",
                "masks": len(out),
                "mask_shape": list(out[0].result.mask.shape) if out else None,
                "wall_s": round(wall, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "peak_rss_before_mb": round(base_mb, 1),
                "torch_threads": args.threads,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
