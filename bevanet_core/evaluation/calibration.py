"""Is a confidence of 0.9 right nine times in ten? Calibration metrics and a fitted temperature.

The published confidence of a pixel is the largest class probability, max softmax(logits / T).
With T = 1 a network trained with cross-entropy is usually over-confident; one temperature T,
fitted by minimising the negative log-likelihood of the labels on frames the network did not
train on, makes it a probability (Guo et al., "On Calibration of Modern Neural Networks", 2017).
The argmax, and so the mask, does not depend on T.

- `CalibrationMeter` accumulates, over the valid pixels of labelled frames, the expected
  calibration error (ECE, 15 equal-width bins) and the AUROC of the confidence at telling right
  pixels from wrong ones, for several temperatures at once, plus a random sample of pixel logits
  to fit a temperature on.
- `fit_temperature` minimises the NLL over that sample (L-BFGS on log T); a monotone map fitted
  after it (`confidence_curve`) removes the error a single temperature leaves.
- The fitted temperature travels in the weights' metadata, `ModelInfo.extra["calibration"]`
  (`temperature_of` reads it; every backend's confidence uses it), and from there into every
  exported ONNX model and engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch

from .confidence_curve import apply_curve

ECE_BINS = 15
AUROC_BINS = 4096  # confidence histogram resolution of the AUROC (ties inside a bin count half)
CALIBRATION_KEY = "calibration"
TEMPERATURE_RANGE = (0.05, 20.0)


def temperature_of(info: Any) -> float:
    """The fitted temperature in a ModelInfo's metadata, 1.0 when there is none. A value that is
    not a number in TEMPERATURE_RANGE is refused (ValueError naming it): corrupt metadata must not
    turn every confidence into 0 or 1."""
    extra = getattr(info, "extra", None) or {}
    entry = extra.get(CALIBRATION_KEY)
    if entry is None:
        return 1.0
    t = entry.get("temperature") if isinstance(entry, dict) else None
    lo, hi = TEMPERATURE_RANGE
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (lo <= float(t) <= hi):
        raise ValueError(
            f"the weights' metadata holds calibration temperature {t!r:.40}; expected a number in {lo}..{hi}"
        )
    return float(t)


def calibration_of(info: Any) -> Optional[dict]:
    """The weights' calibration record (temperature, where it was fitted, figures), or None."""
    entry = (getattr(info, "extra", None) or {}).get(CALIBRATION_KEY)
    return dict(entry) if isinstance(entry, dict) else None


def _valid_pixels(logits: torch.Tensor, label: np.ndarray, num_classes: int, ignore_index: int):
    """C x H x W logits and an H x W label -> (N x C logits, N labels) of the valid pixels."""
    lab = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)).reshape(-1)
    if logits.shape[-2:] != tuple(label.shape):
        raise ValueError(f"logits {tuple(logits.shape[-2:])} and label {label.shape} sizes differ")
    flat = logits.reshape(logits.shape[0], -1).t()
    keep = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
    return flat[keep].float(), lab[keep]


def max_prob_and_correct(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0):
    """N x C logits, N labels -> (max softmax(logits / T), argmax == label) per pixel."""
    top, pred = logits.max(dim=1)
    conf = torch.exp(top / temperature - torch.logsumexp(logits / temperature, dim=1))
    return conf, pred == labels


class _Bins:
    """ECE bins and the right/wrong confidence histograms of one temperature."""

    def __init__(self) -> None:
        self.count = np.zeros(ECE_BINS, np.int64)
        self.conf_sum = np.zeros(ECE_BINS, np.float64)
        self.right_sum = np.zeros(ECE_BINS, np.int64)
        self.hist_right = np.zeros(AUROC_BINS, np.int64)
        self.hist_wrong = np.zeros(AUROC_BINS, np.int64)

    def add(self, conf: torch.Tensor, right: torch.Tensor) -> None:
        c = conf.double().numpy()
        r = right.numpy()
        b = np.minimum((c * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        self.count += np.bincount(b, minlength=ECE_BINS)
        self.conf_sum += np.bincount(b, weights=c, minlength=ECE_BINS)
        self.right_sum += np.bincount(b, weights=r.astype(np.float64), minlength=ECE_BINS).astype(np.int64)
        h = np.minimum((c * AUROC_BINS).astype(np.int64), AUROC_BINS - 1)
        self.hist_right += np.bincount(h[r], minlength=AUROC_BINS)
        self.hist_wrong += np.bincount(h[~r], minlength=AUROC_BINS)

    def ece(self) -> Optional[float]:
        n = int(self.count.sum())
        if n == 0:
            return None
        gap = np.abs(self.right_sum - self.conf_sum)  # per bin: |sum(right) - sum(conf)|
        return float(gap.sum() / n)

    def auroc(self) -> Optional[float]:
        return auroc_from_histograms(self.hist_right, self.hist_wrong)

    def accuracy(self) -> Optional[float]:
        n = int(self.count.sum())
        return float(self.right_sum.sum() / n) if n else None

    def mean_confidence(self) -> Optional[float]:
        n = int(self.count.sum())
        return float(self.conf_sum.sum() / n) if n else None

    def reliability(self) -> list[dict]:
        """Per bin: range, pixels, mean confidence, accuracy (the reliability diagram)."""
        rows = []
        for i in range(ECE_BINS):
            n = int(self.count[i])
            rows.append(
                {
                    "bin": [round(i / ECE_BINS, 4), round((i + 1) / ECE_BINS, 4)],
                    "pixels": n,
                    "confidence": float(self.conf_sum[i] / n) if n else None,
                    "accuracy": float(self.right_sum[i] / n) if n else None,
                }
            )
        return rows


def auroc_from_histograms(hist_right: np.ndarray, hist_wrong: np.ndarray) -> Optional[float]:
    """P(confidence of a right pixel > that of a wrong one), ties counted half, from two
    histograms over the same confidence bins; None when either side is empty."""
    pos, neg = hist_right.astype(np.float64), hist_wrong.astype(np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    neg_below = np.cumsum(neg) - neg  # wrong pixels in lower bins
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


class CalibrationMeter:
    """Accumulates ECE, error AUROC, NLL and a pixel sample over labelled frames.

    `temperatures` maps a name ('before', 'after') to a temperature, `curves` a name to the
    monotone map applied after it (`confidence_curve`; the NLL is the temperature's alone);
    `sample_per_frame` valid pixels of every frame are kept (logits and label) for the fits.
    """

    def __init__(
        self,
        num_classes: int,
        temperatures: dict[str, float],
        ignore_index: int = 255,
        sample_per_frame: int = 20000,
        seed: int = 0,
        curves: Optional[dict[str, Any]] = None,
    ) -> None:
        self.num_classes = int(num_classes)
        self.curves = {k: v for k, v in (curves or {}).items() if v is not None}
        self.ignore_index = int(ignore_index)
        self.temperatures = {k: float(v) for k, v in temperatures.items()}
        self.bins = {k: _Bins() for k in self.temperatures}
        self.nll_sum = {k: 0.0 for k in self.temperatures}
        self.pixels = 0
        self.frames = 0
        self.sample_per_frame = int(sample_per_frame)
        self._rng = torch.Generator().manual_seed(seed)
        self._sample_logits: list[torch.Tensor] = []
        self._sample_labels: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, label: np.ndarray) -> None:
        """C x H x W float logits at the label's resolution and the H x W label (ignore_index and
        ids outside the classes are not counted)."""
        z, y = _valid_pixels(logits, label, self.num_classes, self.ignore_index)
        self.frames += 1
        self.add_pixels(z, y)

    def add_pixels(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """N x C logits and N labels of valid pixels (a frame's, or a kept sample's)."""
        if y.numel() == 0:
            return
        self.pixels += int(y.numel())
        for name, t in self.temperatures.items():
            conf, right = max_prob_and_correct(z, y, t)
            if name in self.curves:
                conf = apply_curve(conf, self.curves[name])
            self.bins[name].add(conf, right)
            self.nll_sum[name] += float(torch.nn.functional.cross_entropy(z / t, y, reduction="sum"))
        if self.sample_per_frame > 0:
            k = min(self.sample_per_frame, int(y.numel()))
            idx = torch.randperm(int(y.numel()), generator=self._rng)[:k]
            self._sample_logits.append(z[idx].clone())
            self._sample_labels.append(y[idx].clone())

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept pixels: (N x C logits, N labels)."""
        if not self._sample_labels:
            return torch.empty(0, self.num_classes), torch.empty(0, dtype=torch.long)
        return torch.cat(self._sample_logits), torch.cat(self._sample_labels)

    def report(self) -> dict:
        """{'ece': {name: value}, 'error_auroc': {...}, 'nll': {...}, 'mean_confidence': {...},
        'pixel_accuracy', 'temperature': {...}, 'pixels', 'frames'}."""
        out: dict[str, Any] = {"ece": {}, "error_auroc": {}, "nll": {}, "mean_confidence": {}}
        for name, b in self.bins.items():
            out["ece"][name] = _round(b.ece())
            out["error_auroc"][name] = _round(b.auroc())
            out["nll"][name] = _round(self.nll_sum[name] / self.pixels if self.pixels else None)
            out["mean_confidence"][name] = _round(b.mean_confidence())
        first = next(iter(self.bins.values()))
        out["pixel_accuracy"] = _round(first.accuracy())
        out["temperature"] = dict(self.temperatures)
        out["pixels"] = self.pixels
        out["frames"] = self.frames
        out["reliability"] = {name: b.reliability() for name, b in self.bins.items()}
        return out


def _round(v: Optional[float], digits: int = 5) -> Optional[float]:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iterations: int = 100) -> float:
    """The temperature minimising the mean NLL of `labels` under softmax(logits / T) (L-BFGS on
    log T, so T stays positive), clipped to TEMPERATURE_RANGE."""
    if labels.numel() == 0:
        raise ValueError("no valid pixels to fit a temperature on (every label is ignored)")
    logits = logits.float()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    lo, hi = TEMPERATURE_RANGE
    return min(max(t, lo), hi)


def format_calibration(report: dict) -> str:
    """Printed lines: ECE and error AUROC before and after calibration."""
    temps = report.get("temperature", {})
    lines = []
    for name in report.get("ece", {}):
        ece, auroc = report["ece"][name], report["error_auroc"][name]
        lines.append(
            f"{'ECE ' + name:<16}{(ece * 100 if ece is not None else float('nan')):8.2f} %   "
            f"error AUROC {auroc if auroc is not None else float('nan'):.4f}   "
            f"(T = {temps.get(name, 1.0):.3f})"
        )
    return "\n".join(lines)


def overlap(names: Sequence[str], other: Sequence[str]) -> int:
    """How many of `names` appear in `other` (frames shared between two splits)."""
    return len(set(names) & set(other))


def write_safetensors_metadata(path, info: Any) -> None:
    """Replaces the ModelInfo in a .safetensors file's header, keeping every tensor byte as it is
    (the data section is copied unchanged; only the JSON header is rewritten), atomically."""
    import json
    import struct
    from pathlib import Path

    from ..checkpoint import METADATA_KEY, atomic_write

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the calibration is stored in .safetensors weights only (export again after it)")
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        header = json.loads(f.read(n))
        data_start = 8 + n
    metadata = dict(header.get("__metadata__") or {})
    metadata[METADATA_KEY] = info.to_json()
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned

    def write(tmp):
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(struct.pack("<Q", len(text)))
            dst.write(text)
            src.seek(data_start)
            while block := src.read(1 << 20):
                dst.write(block)

    atomic_write(path, write)
