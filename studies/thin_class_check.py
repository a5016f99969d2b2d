"""Where a model's masks of a thin class (Pole, SignSymbol) go wrong: missed, or only misplaced.

    bevanet-eval --dataset camvid --root ../shared/data/camvid --list val.lst --save-predictions P
    python studies/thin_class_check.py --predictions P --class Pole

For one class, over every labelled image of the list:
- IoU, precision and recall, pixel for pixel (as bevanet-eval counts them);
- precision and recall with a tolerance of r pixels: a predicted pixel counts as right when a
  labelled one of the class lies within r pixels (a (2r+1)-square), and a labelled pixel as
  found when a predicted one does. Where these rise far above the exact figures, the model finds
  the objects but draws them offset or too wide; where they stay low, it does not find them;
- what the class's labelled pixels were predicted as, and what its wrongly predicted pixels
  are labelled.
Void pixels (label >= the number of classes) are left out everywhere.
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

from bevanet_core.data.classes import CAMVID_CLASSES  # noqa: E402


def read_index_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SystemExit(f"cannot read {path} as an image")
    if image.ndim != 2:
        raise SystemExit(f"{path} is not a one-channel index PNG")
    return image


def check(pairs, class_index: int, num_classes: int, tolerances) -> dict:
    """`pairs`: (label, prediction) index arrays of the same size."""
    counts = {"tp": 0, "fp": 0, "fn": 0}
    near = {r: {"pred_near_label": 0, "label_near_pred": 0} for r in tolerances}
    label_as = np.zeros(num_classes, np.int64)
    false_on = np.zeros(num_classes, np.int64)
    for label, pred in pairs:
        if label.shape != pred.shape:
            raise SystemExit(
                f"a prediction is {pred.shape[1]}x{pred.shape[0]} but its label {label.shape[1]}x{label.shape[0]}"
            )
        valid = label < num_classes
        is_label = (label == class_index) & valid
        is_pred = (pred == class_index) & valid
        counts["tp"] += int((is_label & is_pred).sum())
        counts["fp"] += int((is_pred & ~is_label).sum())
        counts["fn"] += int((is_label & ~is_pred).sum())
        label_as += np.bincount(np.minimum(pred[is_label], num_classes - 1), minlength=num_classes)
        false_on += np.bincount(label[is_pred & ~is_label], minlength=num_classes)
        for r in tolerances:
            kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
            label_wide = cv2.dilate(is_label.astype(np.uint8), kernel) > 0
            pred_wide = cv2.dilate(is_pred.astype(np.uint8), kernel) > 0
            near[r]["pred_near_label"] += int((is_pred & label_wide).sum())
            near[r]["label_near_pred"] += int((is_label & pred_wide).sum())
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    n_label, n_pred = tp + fn, tp + fp

    def share(a, b):
        return 100.0 * a / b if b else float("nan")

    return {
        "iou": share(tp, tp + fp + fn),
        "precision": share(tp, n_pred),
        "recall": share(tp, n_label),
        "label_pixels": n_label,
        "predicted_pixels": n_pred,
        "tolerance": {
            r: {"precision": share(v["pred_near_label"], n_pred), "recall": share(v["label_near_pred"], n_label)}
            for r, v in near.items()
        },
        "labelled_pixels_predicted_as": label_as.tolist(),
        "false_pixels_labelled_as": false_on.tolist(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--predictions", required=True, type=Path, help="folder of bevanet-eval --save-predictions index PNGs"
    )
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    ap.add_argument("--list", default="val.lst", help="list of 'image label' pairs relative to --root")
    ap.add_argument("--class", dest="class_name", default="Pole", choices=CAMVID_CLASSES)
    ap.add_argument("--tolerance", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.predictions.is_dir():
        ap.error(f"--predictions {args.predictions}: not a folder")
    list_file = args.root / args.list
    if not list_file.is_file():
        ap.error(f"--list: {list_file} not found")
    if any(r < 1 for r in args.tolerance):
        ap.error("--tolerance: every value must be at least 1")
    pairs = []
    for line in list_file.read_text().splitlines():
        if not line.strip():
            continue
        label_path = args.root / line.split()[1]
        pred_path = args.predictions / Path(line.split()[1]).name
        if not pred_path.is_file():
            ap.error(f"no prediction {pred_path} for {label_path}")
        pairs.append((read_index_png(label_path), read_index_png(pred_path)))
    names = list(CAMVID_CLASSES)
    result = check(pairs, names.index(args.class_name), len(names), args.tolerance)
    result.update({"class": args.class_name, "images": len(pairs), "predictions": str(args.predictions)})
    print(
        f"{args.class_name} over {len(pairs)} images: IoU {result['iou']:.2f}, precision "
        f"{result['precision']:.1f}%, recall {result['recall']:.1f}% "
        f"({result['predicted_pixels']} predicted, {result['label_pixels']} labelled pixels)"
    )
    for r, v in result["tolerance"].items():
        print(f"  within {r} px: precision {v['precision']:.1f}%, recall {v['recall']:.1f}%")
    for key, what in (
        ("labelled_pixels_predicted_as", f"labelled {args.class_name} predicted as"),
        ("false_pixels_labelled_as", f"predicted {args.class_name} wrongly, labelled"),
    ):
        total = sum(result[key]) or 1
        top = sorted(zip(names, result[key], strict=True), key=lambda kv: -kv[1])[:5]
        print(f"  {what}: " + ", ".join(f"{n} {100.0 * v / total:.1f}%" for n, v in top))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
