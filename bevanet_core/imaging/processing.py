"""Pre- and post-processing in torch, on whichever device the backend runs on.

Frames are uploaded as uint8; channel reordering, resizing, normalisation, upsampling of the
logits and argmax all happen on that device, so on a GPU only the uint8 mask comes back.
Frames of the same size are processed as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..options import UPSAMPLE_MODES
from .encodings import to_rgb_chw
from .geometry import ResizePlan
from .lru import LRUCache

# upsampled logits larger than this (bytes) are made band by band, so that a huge frame (an
# 8000x6000 camera: 2.1 GB of 11-class float logits at once) needs one band of memory
BAND_BYTES = 256 * 1024 * 1024


def _groups(plans: Sequence[ResizePlan]) -> dict[ResizePlan, list[int]]:
    groups: dict[ResizePlan, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(plan, []).append(i)
    return groups


_NORM_CACHE: dict[tuple[tuple[float, ...], tuple[float, ...], str], tuple[torch.Tensor, torch.Tensor]] = {}


def _normalisation(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
    """(scale, shift) with x_norm = uint8 * scale + shift, kept on the device (no re-upload)."""
    key = (mean, std, str(device))
    if key not in _NORM_CACHE:
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        _NORM_CACHE[key] = (1.0 / (255.0 * std_t), -mean_t / std_t)
    return _NORM_CACHE[key]


def preprocess(
    frames: Sequence[tuple[torch.Tensor, str]],
    plans: Sequence[ResizePlan],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    antialias: bool = False,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """(HxWxC uint8 frame, canonical encoding) pairs -> normalised N x 3 x H x W network input.

    Padding (letterbox) is 0 after normalisation, i.e. the dataset mean colour. `out`, if given,
    is a preallocated buffer of the right shape (e.g. a CUDA-graph input) filled in place.
    """
    net_w, net_h = plans[0].net_size
    if out is None:
        out = torch.zeros((len(frames), 3, net_h, net_w), dtype=dtype, device=device)
    elif any(p.mode == "letterbox" for p in plans):
        out.zero_()
    scale, shift = _normalisation(tuple(mean), tuple(std), device)
    for plan, idx in _groups(plans).items():
        rgb = torch.stack([to_rgb_chw(frames[i][0].to(device, non_blocking=True), frames[i][1]) for i in idx])
        x = rgb.float()
        if (plan.content_w, plan.content_h) != plan.in_size:
            x = F.interpolate(
                x,
                size=(plan.content_h, plan.content_w),
                mode="bilinear",
                align_corners=False,
                antialias=antialias,
            )
        x = x * scale + shift
        x0, y0, x1, y1 = plan.content_box
        if len(idx) == len(frames):
            out[:, :, y0:y1, x0:x1] = x.to(dtype)
        else:
            for j, i in enumerate(idx):
                out[i, :, y0:y1, x0:x1] = x[j].to(dtype)
    return out


class Postprocessor:
    """Maps low-resolution logits (1/8 for most networks, 1/4 for BSSNet-B) back to every
    frame's own resolution (cached per plan and output stride). `align_corners`: how the
    network's training objective placed the logit cells (`options.logits_align_corners`), so
    that each frame pixel reads the logits where training put its label. `temperature`: the
    confidence is the max of softmax(logits / temperature), the calibrated probability when the
    weights carry a fitted temperature (`evaluation.calibration`); the labels do not depend on it.
    `confidence_table`: 256 uint8 entries, the fitted monotone map applied to that 8-bit
    confidence (`evaluation.confidence_curve`), or None."""

    def __init__(
        self,
        upsample: str = "logits",
        align_corners: bool = False,
        temperature: float = 1.0,
        confidence_table: Optional[np.ndarray] = None,
    ):
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if not (isinstance(temperature, (int, float)) and 0.0 < float(temperature) < float("inf")):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        self.upsample = upsample
        self.align_corners = bool(align_corners)
        self.temperature = float(temperature)
        table = None if confidence_table is None else np.array(confidence_table)
        if table is not None and (table.shape != (256,) or table.dtype != np.uint8):
            raise ValueError("confidence_table must hold 256 uint8 entries")
        self._table = None if table is None else torch.from_numpy(table)
        # per frame size, bounded (a stream of ever new sizes must not grow memory without end)
        self._grids: LRUCache[torch.Tensor] = LRUCache()
        self._indices: LRUCache[tuple[torch.Tensor, torch.Tensor]] = LRUCache()
        self._positions: LRUCache[tuple[torch.Tensor, ...]] = LRUCache()

    def _grid(self, plan: ResizePlan, device: torch.device) -> torch.Tensor:
        return self._grids.get_or_make(
            (plan, str(device)), lambda: plan.sampling_grid(device, align_corners=self.align_corners)
        )

    def _index(self, plan: ResizePlan, device: torch.device, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        def make():
            rows, cols = plan.source_indices(stride, self.align_corners)
            return torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)

        return self._indices.get_or_make((plan, str(device), stride), make)

    def _blend(self, plan: ResizePlan, device: torch.device, map_size: tuple[int, int]):
        """Per axis: the two source cells of every output column/row and the second's weight."""

        def make():
            out = []
            for pos, n in zip(plan.source_positions(map_size, self.align_corners), map_size, strict=True):
                p = torch.from_numpy(pos).to(device=device, dtype=torch.float32)
                i0 = p.long().clamp_(max=n - 1)
                out += [i0, (i0 + 1).clamp_(max=n - 1), p - i0.float()]
            return tuple(out)

        return self._positions.get_or_make((plan, str(device), map_size), make)

    def _widen(self, part: torch.Tensor, plan: ResizePlan):
        """N x C x h x w logits widened to the frame's width at their own height, and each output
        row's two source rows with the second's weight (N x C x h x W, i0, i1, 1 x 1 x H x 1)."""
        x0, x1, lx, y0, y1, ly = self._blend(plan, part.device, (part.shape[-1], part.shape[-2]))
        wide = part[..., x0] * (1.0 - lx) + part[..., x1] * lx
        return wide, y0, y1, ly.view(1, 1, -1, 1)

    def upsample_logits(self, logits: torch.Tensor, plan: ResizePlan) -> torch.Tensor:
        """N x C x h x w logits -> N x C x H_in x W_in, bilinear at the exact source positions."""
        w, h = plan.in_size
        if plan.mode == "stretch" and (not self.align_corners or plan.in_size == plan.net_size):
            # identical to the sampling grid for a full-frame placement, and faster
            return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=self.align_corners)
        if plan.mode == "stretch":
            # separable, with the banded path's blend: the exact source positions, without an
            # H x W x 2 sampling grid
            wide, y0, y1, ly = self._widen(logits, plan)
            return wide[:, :, y0, :] * (1.0 - ly) + wide[:, :, y1, :] * ly
        grid = self._grid(plan, logits.device).to(logits.dtype).expand(logits.shape[0], -1, -1, -1)
        return F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=self.align_corners)

    def _banded(
        self, part: torch.Tensor, plan: ResizePlan, confidence: bool
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Stretch upsampling + argmax of N x C x h x w logits to N x H x W labels, in bands of
        output rows: bilinear interpolation is separable, so the logits are first widened to
        the frame's width at their own height, then each band of rows is blended from its two
        source rows (`source_positions`). Agrees with the one-shot path up to float rounding."""
        n, c = part.shape[:2]
        w_out, h_out = plan.in_size
        wide, i0, i1, l1 = self._widen(part, plan)
        l0 = 1.0 - l1
        labels = torch.empty((n, h_out, w_out), dtype=torch.uint8, device=part.device)
        conf = torch.empty_like(labels) if confidence else None
        rows = max(1, BAND_BYTES // max(1, n * c * w_out * 4))
        for y0 in range(0, h_out, rows):
            y1 = min(h_out, y0 + rows)
            band = wide[:, :, i0[y0:y1], :] * l0[:, :, y0:y1] + wide[:, :, i1[y0:y1], :] * l1[:, :, y0:y1]
            top, lab = band.max(dim=1)
            labels[:, y0:y1] = lab.to(torch.uint8)
            if conf is not None:
                conf[:, y0:y1] = self.confidence(top, band)
        return labels, conf

    def confidence(self, top: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """uint8 max softmax(logits / T) * 255 = exp(max / T - logsumexp(logits / T)) * 255, without
        materialising the softmax, through the fitted curve's table if any. `logits`: N x C x ...,
        `top`: their max over C."""
        t = self.temperature
        if t == 1.0:
            p = torch.exp(top - torch.logsumexp(logits, dim=1))
        else:
            p = torch.exp(top / t - torch.logsumexp(logits / t, dim=1))
        return self._mapped((p * 255.0).round_().to(torch.uint8))

    def _mapped(self, conf: torch.Tensor) -> torch.Tensor:
        """The 8-bit temperature-scaled confidence through the fitted monotone map, if any."""
        if self._table is None:
            return conf
        if self._table.device != conf.device:
            self._table = self._table.to(conf.device)
        return self._table[conf.long()]

    def __call__(
        self, logits: torch.Tensor, plans: Sequence[ResizePlan], confidence: bool = False
    ) -> list[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Returns per frame (H x W uint8 labels, H x W uint8 confidence or None) on the device."""
        logits = logits.float()
        results: list[Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]] = [None] * len(plans)
        for plan, idx in _groups(plans).items():
            part = logits[idx] if len(idx) < len(plans) else logits
            w_out, h_out = plan.in_size
            full_bytes = part.shape[0] * part.shape[1] * h_out * w_out * 4
            if self.upsample == "logits" and plan.mode == "stretch" and full_bytes > BAND_BYTES:
                labels, conf = self._banded(part, plan, confidence)
                for j, i in enumerate(idx):
                    results[i] = (labels[j], conf[j] if conf is not None else None)
                continue
            if self.upsample == "logits":
                part = self.upsample_logits(part, plan)
            top, labels = part.max(dim=1)
            conf = None
            if confidence:
                conf = self.confidence(top, part)
            labels = labels.to(torch.uint8)
            if self.upsample == "labels":
                rows, cols = self._index(plan, logits.device, output_stride(plan, logits))
                labels = labels[:, rows[:, None], cols[None, :]]
                conf = conf[:, rows[:, None], cols[None, :]] if conf is not None else None
            for j, i in enumerate(idx):
                results[i] = (labels[j], conf[j] if conf is not None else None)
        return results  # type: ignore[return-value]


def output_stride(plan: ResizePlan, logits: torch.Tensor) -> int:
    """The network's output stride, read from the logits' width against the network input."""
    stride = plan.net_size[0] // logits.shape[-1]
    if stride < 1 or plan.net_size[0] != stride * logits.shape[-1]:
        raise ValueError(
            f"logits {tuple(logits.shape[-2:])} are not an integer fraction of the "
            f"network input {plan.net_size[1]}x{plan.net_size[0]} (HxW)"
        )
    return stride


def palette_tensor(palette: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """256 x 3 uint8 lookup table on `device`; ids without a colour (255) are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return torch.from_numpy(lut).to(device)
