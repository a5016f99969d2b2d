"""Per-class loss weights from the label statistics of a training set.

`data.class_weights` in a recipe is either an explicit list (one weight per class) or the name
of a scheme computed here from the training labels when the run starts:

- ``median-frequency``: SegNet's median frequency balancing, ``w_c = median(f) / f_c``, where
  ``f_c`` is the pixel count of class c divided by the pixel count of the images that contain it;
- ``sqrt-median-frequency``: its square root, a milder push towards rare classes.

Both are scaled so that the weight averaged over the training pixels is 1: the loss keeps its
scale, so the learning rate of a recipe means the same with or without weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from ..data.datasets import IGNORE_INDEX, SegmentationDataset

SCHEMES = {"median-frequency": 1.0, "sqrt-median-frequency": 0.5}


def label_statistics(dataset: SegmentationDataset) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, pixels of the images that contain each class) over `dataset`,
    read from the label files alone (images are not decoded)."""
    n = dataset.num_classes
    pixels = np.zeros(n, np.int64)
    present_in = np.zeros(n, np.int64)
    for _, label_path in dataset.pairs:
        if label_path is None:
            continue
        label = dataset.map_label(dataset.read_raw_label(label_path), label_path)
        counts = np.bincount(label[label != IGNORE_INDEX].ravel(), minlength=n)[:n]
        pixels += counts
        present_in[counts > 0] += label.size
    return pixels, present_in


def median_frequency_weights(pixels: np.ndarray, present_in: np.ndarray, power: float = 1.0) -> list[float]:
    """Median frequency balancing raised to `power`, scaled to a pixel-weighted mean of 1.
    A class absent from the training labels gets weight 0 (it has no pixels to weigh)."""
    pixels = np.asarray(pixels, np.float64)
    present_in = np.asarray(present_in, np.float64)
    seen = pixels > 0
    if not seen.any():
        raise ValueError("the training labels contain no labelled pixel: class weights cannot be computed")
    freq = np.where(seen, pixels / np.maximum(present_in, 1.0), 0.0)
    weights = np.where(seen, (np.median(freq[seen]) / np.where(seen, freq, 1.0)) ** power, 0.0)
    weights /= (weights * pixels).sum() / pixels.sum()
    return [round(float(w), 4) for w in weights]


def resolve_class_weights(
    spec: Optional[Union[str, Sequence[float]]], dataset: SegmentationDataset
) -> Optional[list[float]]:
    """The weights a recipe's `data.class_weights` asks for, as a list with one per class."""
    if spec is None:
        return None
    n = dataset.num_classes
    if isinstance(spec, str):
        if spec not in SCHEMES:
            raise ValueError(
                f"data.class_weights: unknown scheme {spec!r}; known: {', '.join(SCHEMES)}, or a list of {n} numbers"
            )
        return median_frequency_weights(*label_statistics(dataset), power=SCHEMES[spec])
    weights = [float(w) for w in spec]
    if len(weights) != n:
        raise ValueError(f"data.class_weights has {len(weights)} entries but the dataset has {n} classes")
    if not all(np.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise ValueError(f"data.class_weights must be finite, non-negative and not all zero: {weights}")
    return weights
