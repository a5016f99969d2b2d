"""Whether one class's masks would be better with its logit shifted: a post-hoc calibration check.

    python studies/logit_offset_sweep.py --class Pole --offsets -1 -0.5 0 0.5 1
    python studies/logit_offset_sweep.py --weights w.safetensors --list train.lst --json out.json

The model (fp32, one thread, PyTorch) runs once over every image of the list, single scale, with
its logits read back as the model family trained them (`options.logits_align_corners`), as
`bevanet-eval` does. For each offset, the class's logit is raised by that much before the argmax
and the confusion matrix is counted again: mIoU, the class's IoU, precision and recall, and the
IoU of every class. Offset 0 is the model as it ships. Where the class's IoU peaks away from 0,
the model under- or over-predicts it and a per-class offset would pay; where it peaks at 0, the
class's errors are in where it is drawn, not in how much of it there is.

Only the winning class's logit margin over the best other class and that other class are kept
per pixel, so the whole of CamVid val fits in a few hundred megabytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def margins(weights, root: Path, list_file: Path, class_index: int, limit: int = 0):
    """Per labelled pixel of every image: (class logit - best other logit, best other class, label)."""
    import torch

    from bevanet_core.checkpoint import load_model
    from bevanet_core.data.datasets import build_dataset
    from bevanet_core.data.transforms import EvalTransform
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training.validation import predict_logits

    model, info = load_model(weights)
    model.eval()
    dataset = build_dataset("camvid", root, list_file, "val", EvalTransform())
    if dataset.num_classes != info.num_classes:
        raise SystemExit(f"the weights have {info.num_classes} classes, the dataset {dataset.num_classes}")
    align = logits_align_corners(info.variant)
    n = len(dataset) if not limit else min(limit, len(dataset))
    out_m, out_o, out_l = [], [], []
    with torch.no_grad():
        for i in range(n):
            image, label = dataset[i]
            logits = predict_logits(model, image.unsqueeze(0), align)[0]
            own = logits[class_index].clone()
            logits[class_index] = float("-inf")
            other_logit, other = logits.max(0)
            keep = (label < info.num_classes).numpy().ravel()
            out_m.append((own - other_logit).numpy().ravel()[keep])
            out_o.append(other.numpy().ravel()[keep].astype(np.uint8))
            out_l.append(label.numpy().ravel()[keep].astype(np.uint8))
    return np.concatenate(out_m), np.concatenate(out_o), np.concatenate(out_l), info


def sweep(margin, other, label, class_index: int, num_classes: int, offsets) -> list:
    from bevanet_core.evaluation.metrics import ConfusionMatrix

    rows = []
    for offset in offsets:
        cm = ConfusionMatrix(num_classes)
        cm.update(np.where(margin + offset > 0, class_index, other), label)
        tp = int(cm.matrix[class_index, class_index])
        predicted, labelled = int(cm.matrix[:, class_index].sum()), int(cm.matrix[class_index].sum())
        iou = cm.iou()
        rows.append(
            {
                "offset": float(offset),
                "miou": cm.miou(),
                "iou": float(np.nan_to_num(iou[class_index]) * 100),
                "precision": 100.0 * tp / predicted if predicted else 0.0,
                "recall": 100.0 * tp / labelled if labelled else 0.0,
                "per_class_iou": [None if np.isnan(v) else float(v * 100) for v in iou],
            }
        )
    return rows


def main(argv=None) -> int:
    from bevanet_core.data.classes import CAMVID_CLASSES

    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    ap.add_argument("--list", default="val.lst", help="list of 'image label' pairs relative to --root")
    ap.add_argument("--class", dest="class_name", default="Pole", choices=CAMVID_CLASSES)
    ap.add_argument("--offsets", type=float, nargs="+", default=[-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    ap.add_argument("--limit", type=int, default=0, help="the first N images only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    list_file = args.root / args.list
    if not list_file.is_file():
        ap.error(f"no list file {list_file}")
    import torch

    torch.set_num_threads(args.threads)
    c = CAMVID_CLASSES.index(args.class_name)
    margin, other, label, info = margins(args.weights, args.root, list_file, c, args.limit)
    rows = sweep(margin, other, label, c, info.num_classes, sorted(set(args.offsets) | {0.0}))
    print(f"| {args.class_name} logit offset | val mIoU | {args.class_name} IoU | precision | recall |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['offset']:+.2f} | {r['miou']:.2f} | {r['iou']:.2f} | {r['precision']:.1f} | {r['recall']:.1f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "weights": args.weights or "shipped",
                    "list": args.list,
                    "class": args.class_name,
                    "class_names": list(info.class_names),
                    "rows": rows,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
