"""BSSNet's training objective (SXQ-STUDY/BSSNet `decode_heads/bssnet_head.py` and configs).

    1.0 * OHEM-CE(main)                                      thresh 0.9, min_kept 131072
    + 20 * class-balanced BCE(border, edge)
    + 1.0 * OHEM-CE(main, labels kept only where sigmoid(border) > 0.8)
    + 1.0 * L1(reconstruction, normalised input image)
    + 1.0 * OHEM-sampled CE(aux3) + 1.0 * OHEM-sampled CE(aux4)   thresh 0.7, min_kept 10000

As in the authors' decode head (align_corners=True), the main and border logits are upsampled
bilinearly with align_corners=True to the label size and the reconstruction to the image size;
the FCN aux heads (align_corners=False) to the label size. The aux terms follow mmseg's
`OHEMPixelSampler` + `CrossEntropyLoss`: a pixel is kept when its true-class probability is
below max(thresh, the probability at rank min_kept x batch), and the kept pixels' CE is summed
and divided by the number of ALL pixels (mmseg's mean of the weighted per-pixel loss), not by
the number kept. Class weights, when given, apply to the three main-head CE terms only (the
authors' Cityscapes configs weight those and not the aux heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.bssnet import BSSNetOutputs
from .losses import OhemCrossEntropy, balanced_bce


@dataclass
class BSSNetLossWeights:
    main: float = 1.0
    border: float = 20.0
    boundary_ce: float = 1.0
    reconstruction: float = 1.0
    aux3: float = 1.0
    aux4: float = 1.0
    border_threshold: float = 0.8


def ohem_sampled_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    thresh: float = 0.7,
    min_kept: int = 10000,
    ignore_index: int = 255,
) -> torch.Tensor:
    """mmseg's OHEMPixelSampler(thresh, min_kept) with a plain CE: the CE of the kept pixels
    (true-class probability below max(thresh, p at rank min_kept x batch)) summed over the
    number of all pixels."""
    pixel_losses = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    with torch.no_grad():
        valid = target != ignore_index
        prob = logits.detach().float().softmax(dim=1)
        safe_target = target.masked_fill(~valid, 0)
        prob = prob.gather(1, safe_target.unsqueeze(1)).squeeze(1)
        valid_prob = prob[valid]
        if valid_prob.numel() > 0:
            sorted_prob, _ = valid_prob.sort()
            rank = min(min_kept * target.shape[0], sorted_prob.numel() - 1)
            threshold = max(sorted_prob[rank].item(), thresh)
        else:
            threshold = thresh
        keep = (valid & (prob < threshold)).to(pixel_losses.dtype)
    return (pixel_losses * keep).mean()


class BSSNetCriterion(nn.Module):
    """BSSNet's loss on `BSSNetOutputs`; `forward(outputs, target, edge)` returns "loss" and
    the detached terms "main", "border", "boundary_ce", "reconstruction", "aux3", "aux4"."""

    def __init__(
        self,
        ignore_index: int = 255,
        ohem_thresh: float = 0.9,
        ohem_min_kept: int = 131072,
        aux_thresh: float = 0.7,
        aux_min_kept: int = 10000,
        class_weights: Optional[Sequence[float]] = None,
        weights: Optional[BSSNetLossWeights] = None,
    ):
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.ignore_index = ignore_index
        self.weights = weights if weights is not None else BSSNetLossWeights()
        self.ohem = OhemCrossEntropy(ignore_index, ohem_thresh, ohem_min_kept, weight)
        self.aux_thresh = aux_thresh
        self.aux_min_kept = aux_min_kept

    def forward(self, outputs: BSSNetOutputs, target: torch.Tensor, edge: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(outputs, BSSNetOutputs):
            raise TypeError(
                f"BSSNetCriterion needs BSSNetOutputs (a BSSNet built with aux_heads=True), "
                f"got {type(outputs).__name__}"
            )
        if edge.shape[-2:] != target.shape[-2:]:
            raise ValueError(
                f"edge map size {tuple(edge.shape[-2:])} differs from the label size {tuple(target.shape[-2:])}"
            )
        w = self.weights
        size = target.shape[-2:]

        def up(x: torch.Tensor, to=size, align_corners: bool = True) -> torch.Tensor:
            return F.interpolate(x.float(), size=to, mode="bilinear", align_corners=align_corners)

        main, border = up(outputs.main), up(outputs.border)[:, 0]
        image = outputs.image.float()
        reconstruction = up(outputs.reconstruction, to=image.shape[-2:])
        terms = {
            "main": self.ohem(main, target),
            "border": balanced_bce(border, edge),
        }
        with torch.no_grad():
            guided = torch.where(
                torch.sigmoid(border) > w.border_threshold,
                target,
                torch.full_like(target, self.ignore_index),
            )
        terms["boundary_ce"] = self.ohem(main, guided)
        terms["reconstruction"] = F.l1_loss(reconstruction, image)
        for name in ("aux3", "aux4"):
            terms[name] = ohem_sampled_cross_entropy(
                up(getattr(outputs, name), align_corners=False),
                target,
                self.aux_thresh,
                self.aux_min_kept,
                self.ignore_index,
            )
        total = sum(getattr(w, name) * value for name, value in terms.items())
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}}
