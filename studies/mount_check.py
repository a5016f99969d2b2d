"""What another camera mount costs a model, and whether the mount augmentation buys it back.

    python studies/mount_check.py --weights base.safetensors mount.safetensors --json mount_check.json

Every labelled CamVid frame comes from one camera rig at one height, so no held-out drive shows
what a camera rolled, pitched or mounted higher does to a model. This check makes those views
from the held-out frames themselves: each frame and its label go through one fixed warp of the
kind `data.geometric: mount` trains with (`MountAugment`: roll about the image centre, a pitch
that moves the horizon, a keystone), the label with nearest-neighbour sampling, and the pixels the
warp brings in from outside the frame ignored. Each model is evaluated as `bevanet-eval` does
(single scale, full image, fp32) on every view, and the table gives mIoU per view and model.

The warps are fixed (not drawn), so two models see the same frames; the mount arm was trained on
warps of this family, so read its row as "does it cope with views like these", not as a figure on
a real second camera.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bevanet_core.data.classes import IGNORE_INDEX  # noqa: E402
from bevanet_core.data.transforms import MountAugment  # noqa: E402

# name -> (roll in degrees, pitch as a share of the height, keystone as a share of the width)
VIEWS = {
    "as recorded": (0.0, 0.0, 0.0),
    "rolled 4 deg": (4.0, 0.0, 0.0),
    "rolled -4 deg": (-4.0, 0.0, 0.0),
    "pitched down (horizon up 6%)": (0.0, -0.06, 0.0),
    "pitched up (horizon down 6%)": (0.0, 0.06, 0.0),
    "keystone 5% (higher mount)": (0.0, 0.0, 0.05),
    "rolled 3 deg, pitched up 4%, keystone 4%": (3.0, 0.04, 0.04),
}


class WarpedFrames:
    """(normalised image tensor, label tensor) of each pair, through one fixed warp."""

    def __init__(self, pairs, view: tuple[float, float, float], mean, std):
        self.pairs, self.view, self.mean, self.std = pairs, view, mean, std

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from bevanet_core.data.files import read_image, read_label
        from bevanet_core.data.transforms import normalize

        image_path, label_path = self.pairs[i]
        image, label = self.warp(read_image(image_path), read_label(label_path))
        return normalize(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64))

    def warp(self, image: np.ndarray, label: np.ndarray):
        h, w = label.shape
        m = MountAugment.matrix(w, h, *self.view)
        if np.allclose(m, np.eye(3)):
            return image, label
        image = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        label = cv2.warpPerspective(label, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=IGNORE_INDEX)
        return image, label


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", required=True, help="the models to compare (weights files)")
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    p.add_argument("--split", default="heldout", help="CamVid split of the frames (default: heldout, 0006R0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from bevanet_core.checkpoint import load_model
    from bevanet_core.data.camvid_splits import camvid_split_pairs
    from bevanet_core.data.files import DatasetError
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training.validation import evaluate

    try:
        pairs = camvid_split_pairs(args.root, args.split)
    except DatasetError as exc:
        raise SystemExit(f"mount_check: {exc}") from None
    results: dict[str, dict[str, float]] = {}
    for weights in args.weights:
        model, info = load_model(weights)
        results[weights] = {}
        for name, view in VIEWS.items():
            frames = WarpedFrames(pairs, view, info.mean, info.std)
            cm = evaluate(
                model, frames, torch.device("cpu"), info.num_classes, align_corners=logits_align_corners(info.variant)
            )
            results[weights][name] = round(cm.miou(), 2)
            print(f"{Path(weights).name}: {name}: mIoU {results[weights][name]:.2f}", flush=True)
    header = "| view | " + " | ".join(Path(w).parent.parent.name or Path(w).name for w in args.weights) + " |"
    lines = [header, "| --- |" + " ---: |" * len(args.weights)]
    for name in VIEWS:
        lines.append(f"| {name} | " + " | ".join(f"{results[w][name]:.2f}" for w in args.weights) + " |")
    table = "\n".join(lines)
    print(f"\n{len(pairs)} frames of {args.split}, mIoU per view\n\n{table}")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "frames": len(pairs), "miou": results, "table": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
