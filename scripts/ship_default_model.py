"""Turns a training run into the shipped default model.

    python scripts/ship_default_model.py RUN_DIR [--out bevanet_core/weights/bevanet_s_camvid.safetensors]

Takes RUN_DIR/best.safetensors (best validation mIoU), drops the training-only heads, stores
fp16 tensors with the class names, palette, normalisation and input size in the metadata, and
copies the run's resolved config and training log to training/logs/<run name>/.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model, save_weights

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--input-size", default="480x360", help="network input WxH the model was trained at")
    args = p.parse_args()
    model, info = load_model(args.run_dir / "best.safetensors")  # inference model: aux heads skipped
    info.input_size = tuple(int(v) for v in args.input_size.split("x"))
    info.extra = {"trained_by": "bevanet-train", "run": args.run_dir.name,
                  "recipe": f"training/{args.run_dir.name}.yaml"}
    save_weights(model, args.out, info, dtype=torch.float16)
    logs = REPO / "training" / "logs" / args.run_dir.name
    logs.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "train.log.jsonl"):
        shutil.copy(args.run_dir / name, logs / name)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, fp16) and {logs}")


if __name__ == "__main__":
    main()
