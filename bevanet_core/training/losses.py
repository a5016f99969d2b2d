"""The BEVANet/PIDNet training objective.

    0.4 * CE(aux) + 1.0 * OHEM-CE(main) + 20 * balanced-BCE(boundary)
    + 1.0 * OHEM-CE(main, labels kept only where sigmoid(boundary) > 0.8)

All logits are upsampled bilinearly (align_corners=True) to the label size first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class OhemCrossEntropy(nn.Module):
    """Online hard example mining: mean CE over pixels whose true-class probability is below
    max(p at rank min_kept, thresh)."""

    def __init__(self, ignore_index: int = 255, thresh: float = 0.9, min_kept: int = 131072,
                 weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.ignore_index = ignore_index
        self.thresh = thresh
        self.min_kept = max(1, min_kept)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pixel_losses = F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                       reduction="none").reshape(-1)
        valid = target.reshape(-1) != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        with torch.no_grad():
            prob = logits.detach().float().softmax(dim=1)
            safe_target = target.masked_fill(target == self.ignore_index, 0)
            prob = prob.gather(1, safe_target.unsqueeze(1)).reshape(-1)[valid]
            sorted_prob, order = prob.sort()
            threshold = max(sorted_prob[min(self.min_kept, sorted_prob.numel() - 1)].item(), self.thresh)
        losses = pixel_losses[valid][order]
        return losses[sorted_prob < threshold].mean() if (sorted_prob < threshold).any() else losses.sum() * 0.0


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits where boundary pixels weigh neg/total and the rest pos/total."""
    logits, target = logits.reshape(-1), target.reshape(-1).to(logits.dtype)
    pos = target == 1
    neg = target == 0
    total = (pos.sum() + neg.sum()).clamp(min=1).to(logits.dtype)
    weight = torch.zeros_like(logits)
    weight[pos] = neg.sum() / total
    weight[neg] = pos.sum() / total
    return F.binary_cross_entropy_with_logits(logits, target, weight, reduction="mean")


@dataclass
class LossWeights:
    aux: float = 0.4
    main: float = 1.0
    boundary: float = 20.0
    boundary_guided: float = 1.0
    boundary_threshold: float = 0.8


class BEVANetCriterion(nn.Module):
    def __init__(self, ignore_index: int = 255, ohem_thresh: float = 0.9, ohem_min_kept: int = 131072,
                 class_weights: Optional[Sequence[float]] = None, weights: LossWeights = LossWeights()):
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.ignore_index = ignore_index
        self.weights = weights
        self.ohem = OhemCrossEntropy(ignore_index, ohem_thresh, ohem_min_kept, weight)
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, outputs, target: torch.Tensor, edge: torch.Tensor) -> Dict[str, torch.Tensor]:
        size = target.shape[-2:]
        aux, main, boundary = (F.interpolate(o.float(), size=size, mode="bilinear", align_corners=True)
                               for o in outputs)
        w = self.weights
        loss_aux = F.cross_entropy(aux, target, weight=self.class_weight, ignore_index=self.ignore_index)
        loss_main = self.ohem(main, target)
        loss_boundary = balanced_bce(boundary[:, 0], edge)
        with torch.no_grad():
            guided = torch.where(torch.sigmoid(boundary[:, 0]) > w.boundary_threshold, target,
                                 torch.full_like(target, self.ignore_index))
        loss_guided = self.ohem(main, guided)
        total = (w.aux * loss_aux + w.main * loss_main + w.boundary * loss_boundary
                 + w.boundary_guided * loss_guided)
        return {"loss": total, "aux": loss_aux.detach(), "main": loss_main.detach(),
                "boundary": loss_boundary.detach(), "guided": loss_guided.detach()}
