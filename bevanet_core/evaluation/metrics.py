"""Confusion-matrix metrics: IoU per class, mIoU, pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from ..timing import latency_stats

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: ground truth, columns: prediction).

    Pixels whose label is `ignore_index` (or outside 0..num_classes-1) are not counted. A
    prediction outside the class range counts as wrong for its pixel's true class.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        # labelled pixels whose prediction was outside the class range: misses with no column
        self.missed = np.zeros(num_classes, dtype=np.int64)

    def update(self, pred: ArrayLike, label: ArrayLike) -> None:
        pred, label = _to_numpy(pred).astype(np.int64), _to_numpy(label).astype(np.int64)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} does not match label shape {label.shape}")
        valid = (label != self.ignore_index) & (label >= 0) & (label < self.num_classes)
        gt, pr = label[valid], pred[valid]
        wrong = (pr < 0) | (pr >= self.num_classes)
        np.add.at(self.missed, gt[wrong], 1)
        gt, pr = gt[~wrong], pr[~wrong]
        self.matrix += np.bincount(gt * self.num_classes + pr, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class matrix into {self.num_classes}-class one")
        self.matrix += other.matrix
        self.missed += other.missed
        return self

    def iou(self) -> np.ndarray:
        """IoU per class in 0..1; NaN for a class absent from both labels and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        gt_total = self.matrix.sum(axis=1) + self.missed
        union = gt_total + self.matrix.sum(axis=0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU in percent over classes present in labels or predictions."""
        iou = self.iou()
        return float(np.nanmean(iou) * 100.0) if np.any(~np.isnan(iou)) else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum() + self.missed.sum()
        return float(np.trace(self.matrix) / total * 100.0) if total else float("nan")

    def as_dict(self, class_names: Optional[Sequence[str]] = None) -> dict:
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        return {
            "miou": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "per_class_iou": {n: (None if np.isnan(v) else float(v * 100.0)) for n, v in zip(names, iou, strict=True)},
            "pixels": int(self.matrix.sum() + self.missed.sum()),
        }


def latency_summary(latencies: Sequence[float]) -> Optional[dict[str, float]]:
    """p50/p90/p99/mean/max in ms (None when no frame was timed)."""
    if not latencies:
        return None
    stats = latency_stats(latencies)
    return {k: stats[k] for k in ("p50", "p90", "p99", "mean", "max")}
