"""A monotone map from the temperature-scaled confidence to the probability of being right.

One temperature (`calibration.fit_temperature`) rescales every logit alike: it fixes a network
that is over-confident everywhere, but it cannot bend the reliability curve where the network is
over-confident at 0.9 and under-confident at 0.5, and the temperature that minimises the
negative log-likelihood is not the one that minimises the calibration error. An isotonic map
(Zadrozny and Elkan, "Transforming classifier scores into accurate multiclass probability
estimates", 2002) fitted after the temperature does: on labelled pixels the model never trained
on, the fraction of right pixels at each confidence, made non-decreasing by pooling adjacent
violators. Being monotone it keeps the order of the pixels' confidences (pixels pooled into one
flat stretch tie), so the mask does not change and the error AUROC barely does.

The map is stored in the calibration record of the weights' metadata as knots,
``"curve": {"confidence": [...], "probability": [...]}`` (both non-decreasing, in 0..1), and
applied by linear interpolation between them: to float confidences by `apply_curve`, and to the
published 8-bit confidence by a 256-entry table (`curve_table`) that every backend uses.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

CURVE_KEY = "curve"
FIT_BINS = 256  # the published confidence has 256 levels; finer bins fit noise
MIN_PIXELS_PER_KNOT = 200  # a knot stands for at least this many pixels, else it is pooled with its neighbour

Curve = tuple[np.ndarray, np.ndarray]


def fit_isotonic(confidence: torch.Tensor, right: torch.Tensor, bins: int = FIT_BINS) -> Curve:
    """Knots (confidence, probability) of the non-decreasing map from `confidence` (N floats in
    0..1) to the fraction of `right` (N bools): pixels binned into `bins` equal-width bins,
    adjacent violators pooled (weighted by pixels), each pooled block one knot at its mean
    confidence. ValueError when there are no pixels."""
    c = confidence.double().reshape(-1).numpy()
    r = right.reshape(-1).numpy().astype(np.float64)
    if c.size == 0:
        raise ValueError("no valid pixels to fit a confidence curve on (every label is ignored)")
    b = np.minimum((c * bins).astype(np.int64), bins - 1)
    count = np.bincount(b, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(b, weights=c, minlength=bins)
    right_sum = np.bincount(b, weights=r, minlength=bins)
    keep = count > 0
    # blocks: [pixels, sum of confidences, sum of right], pooled while a block is not above the last
    blocks: list[list[float]] = []
    for n, cs, rs in zip(count[keep], conf_sum[keep], right_sum[keep], strict=True):
        blocks.append([n, cs, rs])
        while len(blocks) > 1 and (
            blocks[-1][2] / blocks[-1][0] <= blocks[-2][2] / blocks[-2][0] or blocks[-2][0] < MIN_PIXELS_PER_KNOT
        ):
            n2, c2, r2 = blocks.pop()
            blocks[-1][0] += n2
            blocks[-1][1] += c2
            blocks[-1][2] += r2
    if len(blocks) > 1 and blocks[-1][0] < MIN_PIXELS_PER_KNOT:  # a thin last block joins the one before
        n2, c2, r2 = blocks.pop()
        blocks[-1] = [blocks[-1][0] + n2, blocks[-1][1] + c2, blocks[-1][2] + r2]
    x = np.array([cs / n for n, cs, _ in blocks])
    y = np.maximum.accumulate(np.array([rs / n for n, _, rs in blocks]))
    return x, y


def apply_curve(confidence: torch.Tensor, curve: Optional[Curve]) -> torch.Tensor:
    """Float confidences mapped through the curve (linear between knots, flat beyond the ends)."""
    if curve is None:
        return confidence
    x, y = curve
    mapped = np.interp(confidence.double().cpu().numpy(), x, y)
    return torch.from_numpy(mapped).to(confidence.dtype)


def curve_table(curve: Optional[Curve]) -> Optional[np.ndarray]:
    """The 256-entry uint8 table from the temperature-scaled 8-bit confidence round(255 p) to the
    published one round(255 curve(p)); None without a curve."""
    if curve is None:
        return None
    x, y = curve
    levels = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.round(np.interp(levels, x, y) * 255.0), 0, 255).astype(np.uint8)


def curve_record(curve: Curve) -> dict:
    """The curve as stored in the calibration record (rounded knots)."""
    x, y = curve
    return {"confidence": [round(float(v), 5) for v in x], "probability": [round(float(v), 5) for v in y]}


def curve_of(info: Any) -> Optional[Curve]:
    """The fitted curve in a ModelInfo's calibration record, None when there is none. Knots that
    are not two equally long non-decreasing lists of numbers in 0..1 (at most 4096) are refused
    with a ValueError naming them: corrupt metadata must not turn every confidence into 0 or 1."""
    entry = (getattr(info, "extra", None) or {}).get("calibration")
    if not isinstance(entry, dict) or entry.get(CURVE_KEY) is None:
        return None
    raw = entry[CURVE_KEY]
    try:
        x = np.asarray(raw["confidence"], dtype=np.float64)
        y = np.asarray(raw["probability"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"the weights' calibration curve is not {{'confidence': [...], 'probability': [...]}}: {raw!r:.80}"
        ) from None
    ok = (
        x.ndim == 1
        and x.shape == y.shape
        and 1 <= x.size <= 4096
        and np.all(np.isfinite(x))
        and np.all(np.isfinite(y))
        and x.min() >= 0.0
        and x.max() <= 1.0
        and y.min() >= 0.0
        and y.max() <= 1.0
        and np.all(np.diff(x) >= 0)
        and np.all(np.diff(y) >= 0)
    )
    if not ok:
        raise ValueError(
            f"the weights' calibration curve is not two equally long non-decreasing lists in 0..1: {raw!r:.80}"
        )
    return x, y
