#!/usr/bin/env python3
"""Pixel agreement of two folders of label masks (e.g. `bevanet-eval --save-predictions` of the
default pipeline and of fp32 PyTorch), over the files both hold.

    bevanet-eval --dataset camvid --root ../shared/data/camvid --split val --save-predictions out/default
    bevanet-eval --dataset camvid --root ../shared/data/camvid --split val --backend torch --precision fp32 \\
        --save-predictions out/fp32
    python benchmarks/compare_masks.py out/default out/fp32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="folder of label PNGs")
    p.add_argument("b", type=Path, help="folder of label PNGs, same names")
    args = p.parse_args(argv)
    names = sorted({f.name for f in args.a.rglob("*.png")} & {f.name for f in args.b.rglob("*.png")})
    if not names:
        print(f"compare_masks: no PNG names common to {args.a} and {args.b}", file=sys.stderr)
        return 2
    files_a = {f.name: f for f in args.a.rglob("*.png")}
    files_b = {f.name: f for f in args.b.rglob("*.png")}
    same = total = 0
    worst = (1.0, "")
    for name in names:
        a = np.asarray(Image.open(files_a[name]))
        b = np.asarray(Image.open(files_b[name]))
        if a.shape != b.shape:
            print(f"compare_masks: {name}: sizes differ ({a.shape} vs {b.shape})", file=sys.stderr)
            return 2
        agree = int((a == b).sum())
        same, total = same + agree, total + a.size
        worst = min(worst, (agree / a.size, name))
    print(
        f"{len(names)} masks, {total} pixels: {same / total:.4%} agree; "
        f"least agreeing frame {worst[1]} at {worst[0]:.4%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
