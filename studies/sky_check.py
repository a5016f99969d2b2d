"""What a model makes of footage it was not trained on, as a new user first sees it.

    python studies/sky_check.py                          # the shipped model
    python studies/sky_check.py --weights a.safetensors b.safetensors --md out.md
    python studies/sky_check.py --input-size 960x720     # the network run at another input size

Each model runs through `bevanet-predict` itself (torch, fp32, one thread) on:
- the first 48 frames of the real highway video ../shared/data/driving_video/solidWhiteRight.mp4
  (clear blue sky at the top of every frame): the share of the pixels in the top 12% of rows
  labelled Sky, and the two classes that take most of those rows;
- the 51 KITTI grey (mono8) frames in ../shared/data/kitti_gray_seq: the share of all pixels
  labelled Building, and the class shares overall.
There are no labels for either: these are the checks a user makes by eye, made countable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TOP_ROWS = 0.12
VIDEO_FRAMES = 48


def predict(weights: str, source: Path, out: Path, max_frames: int = 0, input_size: str = "") -> list:
    cmd = [sys.executable, "-m", "bevanet_core.cli.predict", str(source), "--out", str(out), "--threads", "1"]
    if input_size:
        cmd += ["--input-size", input_size]
    if weights != "shipped":
        cmd += ["--weights", weights]
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bevanet-predict failed on {source}: {proc.stderr.strip()}")
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((out / "masks").glob("*.png"))]


def shares(masks: list, class_names: list) -> dict:
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256)[: len(class_names)]
    total = max(int(sum(m.size for m in masks)), 1)
    return {name: round(100.0 * int(c) / total, 1) for name, c in zip(class_names, counts, strict=True)}


def check(weights: str, video: Path, kitti: Path, input_size: str = "") -> dict:
    from bevanet_core.checkpoint import load_model

    _, info = load_model(None if weights == "shipped" else weights)
    names = list(info.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        frames = predict(weights, video, Path(tmp) / "video", VIDEO_FRAMES, input_size)
        tops = [m[: max(1, int(round(TOP_ROWS * m.shape[0])))] for m in frames]
        grey = predict(weights, kitti, Path(tmp) / "kitti", 0, input_size)
    top = shares(tops, names)
    kitti_shares = shares(grey, names)
    return {
        "weights": weights,
        "input_size": input_size or "the model's",
        "val_miou_in_file": info.extra.get("val_miou"),
        "video_frames": len(frames),
        "top_rows_sky_pct": top.get("Sky", 0.0),
        "top_rows_leading": sorted(top.items(), key=lambda kv: -kv[1])[:3],
        "kitti_frames": len(grey),
        "kitti_building_pct": kitti_shares.get("Building", 0.0),
        "kitti_leading": sorted(kitti_shares.items(), key=lambda kv: -kv[1])[:4],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--weights", nargs="*", default=["shipped"], help="weights files, or 'shipped'")
    p.add_argument("--video", type=Path, default=SHARED / "driving_video" / "solidWhiteRight.mp4")
    p.add_argument("--kitti", type=Path, default=SHARED / "kitti_gray_seq")
    p.add_argument("--input-size", default="", help="network input WxH for every model (default: each model's own)")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    args = p.parse_args(argv)
    for path in (args.video, args.kitti):
        if not path.exists():
            p.error(f"not found: {path}")
    sys.path.insert(0, str(REPO))
    rows = [check(w, args.video, args.kitti, args.input_size) for w in args.weights]
    lines = [
        f"| weights | val mIoU (file) | video: top {TOP_ROWS:.0%} rows Sky | video top rows, leading classes "
        "| KITTI grey: Building | KITTI leading classes |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        lead = ", ".join(f"{k} {v}%" for k, v in r["top_rows_leading"])
        kitti = ", ".join(f"{k} {v}%" for k, v in r["kitti_leading"])
        lines.append(
            f"| {r['weights']} | {r['val_miou_in_file'] or '-'} | {r['top_rows_sky_pct']}% | {lead} | "
            f"{r['kitti_building_pct']}% | {kitti} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
