"""The BEVANet/PIDNet training objective.

    0.4 * CE(aux) + 1.0 * OHEM-CE(main) + 20 * balanced-BCE(boundary)
    + 1.0 * OHEM-CE(main, labels kept only where sigmoid(boundary) > 0.8)
    [+ w * Lovasz-softmax(main), when loss.lovasz = w > 0]

All logits are upsampled bilinearly (align_corners=True) to the label size first. PIDNet uses
the same objective; BiSeNetV2 and STDC-Seg have their own (below), chosen by
`objective.TrainingObjective` from the type of the model's training outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def interpolation_matrix(out_size: int, in_size: int, align_corners: bool) -> torch.Tensor:
    """The (out_size x in_size) float32 matrix of 1-D linear interpolation, with the sampling
    positions and weights of `F.interpolate(mode="bilinear")` (computed in float32 as ATen
    does): each row holds the two weights of one output sample."""
    f32 = torch.float32
    i = torch.arange(out_size, dtype=f32)
    if align_corners:
        scale = torch.tensor((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0, dtype=f32)
        src = i * scale
    else:
        scale = torch.tensor(in_size / out_size, dtype=f32)
        src = ((i + 0.5) * scale - 0.5).clamp(min=0.0)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo.to(f32)
    m = torch.zeros(out_size, in_size, dtype=f32)
    m[torch.arange(out_size), lo] += 1.0 - frac
    m[torch.arange(out_size), hi] += frac
    return m


_MATRICES: dict[tuple, torch.Tensor] = {}


def upsample_bilinear(x: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    """Bilinear upsampling of NCHW logits to `size` as two matrix products (rows, then columns),
    in float32: the same weights as `F.interpolate(mode="bilinear")` (equal within float
    rounding), several times faster forward and backward on a CPU, where the loss upsamples
    three heads of a batch to the full label size every step."""
    (h, w), (out_h, out_w) = x.shape[-2:], tuple(size)
    x = x.float()
    if (h, w) == (out_h, out_w):
        return x
    mats = []
    for n_out, n_in in ((out_h, h), (out_w, w)):
        key = (n_out, n_in, align_corners, x.device)
        if key not in _MATRICES:
            _MATRICES[key] = interpolation_matrix(n_out, n_in, align_corners).to(x.device)
        mats.append(_MATRICES[key])
    rows, cols = mats
    return torch.matmul(rows, torch.matmul(x, cols.t()))


class OhemCrossEntropy(nn.Module):
    """Online hard example mining: mean CE over pixels whose true-class probability is below
    max(p at rank min_kept, thresh)."""

    def __init__(
        self,
        ignore_index: int = 255,
        thresh: float = 0.9,
        min_kept: int = 131072,
        weight: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.thresh = thresh
        self.min_kept = max(1, min_kept)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_log_probs(logits.float().log_softmax(dim=1), target)

    def from_log_probs(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss from log-softmax outputs."""
        valid = target != self.ignore_index
        return self.reduce(self.pixel_nll(log_probs, target, valid), target, valid)

    def pixel_nll(self, log_probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Per-pixel negative log-likelihood of the true class (0 where `valid` is False)."""
        nll = -log_probs.gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
        return nll.masked_fill(~valid, 0.0)

    def reduce(self, nll: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mean (class-weighted) NLL over the hard pixels among `valid`, so that one NLL map
        serves several subsets of the same targets."""
        with torch.no_grad():
            n_valid = int(valid.sum())
            if n_valid == 0:
                return nll.sum() * 0.0
            # the true-class probability, with other pixels above any threshold
            prob = torch.where(valid, (-nll.detach()).exp(), torch.full_like(nll, 2.0)).reshape(-1)
            # threshold = max(prob of rank k among the valid pixels, thresh), without sorting:
            # that rank lies below thresh exactly when more than k valid pixels do
            k = min(self.min_kept, n_valid - 1)
            threshold = self.thresh
            if int((prob < self.thresh).sum()) <= k:
                threshold = max(float(prob.kthvalue(k + 1).values), self.thresh)
            keep = (prob < threshold).reshape(nll.shape)
        losses = nll if self.weight is None else nll * self.weight[target.masked_fill(~valid, 0)]
        return (losses * keep).sum() / keep.sum().clamp(min=1)


def lovasz_softmax(
    prob: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, min_error: float = 0.0
) -> torch.Tensor:
    """Lovasz-softmax (Berman et al., CVPR 2018): the convex surrogate of 1 - IoU, averaged over
    the classes present in `target`, computed over the whole batch as one set of pixels (as the
    dataset IoU is). `prob`: N x C x H x W softmax probabilities. With one-hot `prob` it equals
    the mean of 1 - IoU over those classes exactly.

    `min_error` > 0 sorts only the pixels whose error for a class exceeds it: they come first in
    the sorted order, so their terms are exact, and the terms left out are each below min_error
    times their share of the Jaccard increments. A trained model is confident on most pixels, so
    this cuts the cost of the sorts several times over."""
    num_classes = prob.shape[1]
    prob = prob.permute(0, 2, 3, 1).reshape(-1, num_classes)
    target = target.reshape(-1)
    valid = target != ignore_index
    prob, target = prob[valid], target[valid]
    losses = []
    for c in torch.unique(target).tolist():
        fg = (target == c).to(prob.dtype)
        errors = (fg - prob[:, c]).abs()
        gts = fg.sum()
        if min_error > 0:
            kept = errors > min_error
            errors, fg = errors[kept], fg[kept]
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order], gts)))
    if not losses:
        return prob.sum() * 0.0
    return torch.stack(losses).mean()


def _lovasz_grad(fg_sorted: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
    """The Jaccard loss's increments along pixels sorted by decreasing error; `gts`: the
    class's pixel count, over all pixels (fg_sorted may be only the first of them)."""
    if fg_sorted.numel() == 0:
        return fg_sorted
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits where boundary pixels weigh neg/total and the rest pos/total."""
    logits, target = logits.reshape(-1), target.reshape(-1).to(logits.dtype)
    pos = target == 1
    neg = target == 0
    n_pos, n_neg = pos.sum(), neg.sum()
    total = (n_pos + n_neg).clamp(min=1).to(logits.dtype)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    weight = torch.where(pos, n_neg / total, torch.where(neg, n_pos / total, zero))
    return F.binary_cross_entropy_with_logits(logits, target, weight, reduction="mean")


LOVASZ_MIN_ERROR = 1e-3  # pixels a class's Lovasz term leaves unsorted: below this error


@dataclass
class LossWeights:
    aux: float = 0.4
    main: float = 1.0
    boundary: float = 20.0
    boundary_guided: float = 1.0
    boundary_threshold: float = 0.8
    lovasz: float = 0.0


class BEVANetCriterion(nn.Module):
    def __init__(
        self,
        ignore_index: int = 255,
        ohem_thresh: float = 0.9,
        ohem_min_kept: int = 131072,
        class_weights: Optional[Sequence[float]] = None,
        weights: Optional[LossWeights] = None,
    ):
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.ignore_index = ignore_index
        self.weights = LossWeights() if weights is None else weights
        self.ohem = OhemCrossEntropy(ignore_index, ohem_thresh, ohem_min_kept, weight)
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, outputs, target: torch.Tensor, edge: torch.Tensor) -> dict[str, torch.Tensor]:
        size = target.shape[-2:]
        aux, main, boundary = (upsample_bilinear(o, size, align_corners=True) for o in outputs)
        w = self.weights
        loss_aux = F.cross_entropy(aux, target, weight=self.class_weight, ignore_index=self.ignore_index)
        valid = target != self.ignore_index
        nll = self.ohem.pixel_nll(main.log_softmax(dim=1), target, valid)  # one map for both OHEM terms
        loss_main = self.ohem.reduce(nll, target, valid)
        loss_boundary = balanced_bce(boundary[:, 0], edge)
        with torch.no_grad():  # the guided term: the main targets where the boundary head fires
            on_boundary = valid & (torch.sigmoid(boundary[:, 0]) > w.boundary_threshold)
        loss_guided = self.ohem.reduce(nll, target, on_boundary)
        total = w.aux * loss_aux + w.main * loss_main + w.boundary * loss_boundary + w.boundary_guided * loss_guided
        terms = {
            "aux": loss_aux.detach(),
            "main": loss_main.detach(),
            "boundary": loss_boundary.detach(),
            "guided": loss_guided.detach(),
        }
        if w.lovasz > 0:
            loss_lovasz = lovasz_softmax(
                main.float().softmax(dim=1), target, self.ignore_index, min_error=LOVASZ_MIN_ERROR
            )
            total = total + w.lovasz * loss_lovasz
            terms["lovasz"] = loss_lovasz.detach()
        return {"loss": total, **terms}


# --------------------------------------------------------------------------- other families


class TopKOhemCrossEntropy(nn.Module):
    """OHEM of BiSeNetV2 and STDC-Seg: mean CE over pixels whose loss exceeds -log(thresh),
    or over the hardest numel/16 pixels when fewer do."""

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7, min_fraction: float = 1 / 16):
        super().__init__()
        self.ignore_index = ignore_index
        self.loss_thresh = -math.log(thresh)
        self.min_fraction = min_fraction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none").reshape(-1)
        n_min = max(1, int(target.numel() * self.min_fraction))
        losses, _ = losses.sort(descending=True)
        if losses[min(n_min, losses.numel() - 1)] > self.loss_thresh:
            return losses[losses > self.loss_thresh].mean()
        return losses[:n_min].mean()


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)


class BiSeNetV2Criterion(nn.Module):
    """OHEM-CE on the main logits and on each of the four booster heads, weight 1 each."""

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7):
        super().__init__()
        self.ohem = TopKOhemCrossEntropy(ignore_index, thresh)

    def forward(self, outputs, target: torch.Tensor, edge: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        size = target.shape[-2:]
        terms = {name: self.ohem(_upsample(logits, size), target) for name, logits in outputs._asdict().items()}
        return {"loss": sum(terms.values()), **{k: v.detach() for k, v in terms.items()}}


def laplacian_detail_target(target: torch.Tensor, fuse=(0.6, 0.3, 0.1)) -> torch.Tensor:
    """STDC's detail ground truth: Laplacian edges of the label map at strides 1, 2 and 4,
    binarised (> 0.1), upsampled, fused with weights 0.6/0.3/0.1 and binarised again."""
    lap = torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]], device=target.device).view(1, 1, 3, 3)
    gt = target.unsqueeze(1).float()
    levels = []
    for stride in (1, 2, 4):
        edges = F.conv2d(gt, lap, stride=stride, padding=1).clamp(min=0)
        if stride > 1:
            edges = F.interpolate(edges, size=gt.shape[-2:], mode="nearest")
        levels.append((edges > 0.1).float())
    fused = sum(w * level for w, level in zip(fuse, levels, strict=True))
    return (fused > 0.1).float()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    p, t = prob.reshape(prob.shape[0], -1), target.reshape(target.shape[0], -1)
    return (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


class STDCCriterion(nn.Module):
    """OHEM-CE on the main and both context-path heads, plus BCE + Dice of the detail head
    against Laplacian detail targets (STDC-Seg's objective)."""

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7):
        super().__init__()
        self.ohem = TopKOhemCrossEntropy(ignore_index, thresh)

    def forward(self, outputs, target: torch.Tensor, edge: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        size = target.shape[-2:]
        terms = {
            name: self.ohem(_upsample(getattr(outputs, name), size), target) for name in ("main", "aux16", "aux32")
        }
        detail = F.interpolate(outputs.detail.float(), size=size, mode="bilinear", align_corners=True)
        detail_target = laplacian_detail_target(target)
        terms["detail_bce"] = F.binary_cross_entropy_with_logits(detail, detail_target)
        terms["detail_dice"] = dice_loss(torch.sigmoid(detail), detail_target)
        return {"loss": sum(terms.values()), **{k: v.detach() for k, v in terms.items()}}
