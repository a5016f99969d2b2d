#!/usr/bin/env python3
"""Fits the health monitor's thresholds (bevanet_core/serving/health.py) on normal footage.

Camera thresholds come from the image figures of every normal frame at hand: CamVid train and
val (colour, 480x360), the KITTI grey sequence and frames of the dash-cam video. The confidence
thresholds come from the model's calibrated confidence on validation frames (default CamVid
val); the class distribution ones from its masks on the frames it trained on (default CamVid
train: "far from anything seen in training" is measured against those). Each threshold is the
most extreme value seen on normal frames with a margin:

    black_p99        = 0.25 x the darkest 99th luma percentile (room for dusk)
    saturated_share  = halfway between the largest saturated share and 1
    noise_sigma      = 2 x the largest noise sigma
    blur_sharpness   = 0.5 x the lowest sharpness
    min_mean_confidence      = the lowest mean confidence - 0.1
    max_low_confidence_share = the largest low-confidence share + 0.1
    max_class_distance       = the largest distance of a training frame's classes from the mean + 0.1
    min_road_share           = 0.5 x the least road in a training frame
    class_prior              = the mean class shares of the training frames

    python scripts/fit_health_thresholds.py [--weights W] [--split val] [--train-split train] [--json out.json]

It prints the figures and the thresholds as Python, ready for HealthThresholds' defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bevanet_core.data.datasets import build_dataset  # noqa: E402
from bevanet_core.serving.health import HealthThresholds, analysis_grey, image_figures, model_figures  # noqa: E402


def normal_frames(data: Path, video_frames: int):
    """(source, RGB frame) of every normal frame at hand."""
    camvid = data / "camvid"
    for split in ("train", "val"):
        ds = build_dataset("camvid", camvid, None, split)
        for i in range(len(ds)):
            yield f"camvid {split}", ds[i][0]
    for path in sorted((data / "kitti_gray_seq").glob("*.png")):
        yield "kitti grey", cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    video = data / "driving_video" / "solidWhiteRight.mp4"
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    step = max(1, total // max(1, video_frames))
    for i in range(0, total, step):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = cap.read()
        if ok:
            yield "dash-cam video", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--weights", help="model for the model thresholds (default: the shipped one)")
    p.add_argument("--split", default="val", help="CamVid split for the confidence thresholds (default val)")
    p.add_argument(
        "--train-split",
        default="train",
        help="CamVid split the model trained on, for the class thresholds (default train)",
    )
    p.add_argument("--video-frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="write the figures and thresholds here")
    args = p.parse_args()

    image = {k: [] for k in ("luma_p99", "saturated_share", "noise_sigma", "sharpness")}
    sources: dict[str, int] = {}
    for source, frame in normal_frames(args.data, args.video_frames):
        f = image_figures(analysis_grey(frame))
        for k in image:
            image[k].append(f[k])
        sources[source] = sources.get(source, 0) + 1

    import torch

    from bevanet_core.runtime import Segmenter, SegmenterConfig

    torch.set_num_threads(args.threads)
    seg = Segmenter(SegmenterConfig(weights=args.weights, backend="torch", num_threads=args.threads))
    low = HealthThresholds().low_confidence
    model = {"mean_confidence": [], "low_confidence_share": []}
    val = build_dataset("camvid", args.data / "camvid", None, args.split)
    for i in range(len(val)):
        res = seg.segment(val[i][0], "rgb8", confidence=True)
        m = model_figures(res.confidence, None, seg.info.num_classes, low)
        for k in model:
            model[k].append(m[k])
    train = build_dataset("camvid", args.data / "camvid", None, args.train_split)
    shares = []
    for i in range(len(train)):
        res = seg.segment(train[i][0], "rgb8")
        shares.append(model_figures(None, res.mask, seg.info.num_classes, low)["class_shares"])
    shares = np.asarray(shares)
    prior = shares.mean(axis=0)
    prior = prior / prior.sum()
    distance = [0.5 * np.abs(s / max(s.sum(), 1e-9) - prior).sum() for s in shares]
    names = [n.lower() for n in seg.info.class_names]
    road = shares[:, names.index("road")] if "road" in names else np.zeros(len(shares))

    fitted = {
        "black_p99": round(0.25 * min(image["luma_p99"]), 1),
        "saturated_share": round((max(image["saturated_share"]) + 1.0) / 2.0, 3),
        "noise_sigma": round(2.0 * max(image["noise_sigma"]), 1),
        "blur_sharpness": round(0.5 * min(image["sharpness"]), 2),
        "min_mean_confidence": round(max(0.0, min(model["mean_confidence"]) - 0.1), 3),
        "max_low_confidence_share": round(min(1.0, max(model["low_confidence_share"]) + 0.1), 3),
        "max_class_distance": round(min(1.0, float(max(distance)) + 0.1), 3),
        "min_road_share": round(0.5 * float(road.min()), 4),
        "class_prior": [round(float(v), 4) for v in prior],
    }
    figures = {
        "frames": sources,
        "confidence_frames": f"camvid {args.split} ({len(val)} frames), temperature {seg.temperature:.3f}",
        "class_frames": f"camvid {args.train_split} ({len(train)} frames)",
        **{f"{k}_range": [round(min(v), 3), round(max(v), 3)] for k, v in image.items()},
        **{f"{k}_range": [round(min(v), 3), round(max(v), 3)] for k, v in model.items()},
        "class_distance_range": [round(min(distance), 3), round(max(distance), 3)],
        "road_share_range": [round(float(road.min()), 4), round(float(road.max()), 4)],
    }
    print(json.dumps(figures, indent=1))
    print("fitted thresholds (HealthThresholds defaults):")
    for k, v in fitted.items():
        print(f"    {k}: {v!r}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "thresholds": fitted}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
