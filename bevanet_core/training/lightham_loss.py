"""The Light-Ham training objective: plain cross-entropy on the main logits.

The authors' configs (Gsunshine/Enjoy-Hamburger `seg_light_ham/configs/_base_/models/
light_ham_van.py`) train the decode head alone, `CrossEntropyLoss(use_sigmoid=False,
loss_weight=1.0)`, with no auxiliary head. As in mmseg, the 1/8 logits are resized bilinearly
(align_corners=False) to the label size, and the mean runs over all pixels, ignored ones counting
zero (mmseg's `avg_non_ignore=False` default); `avg_non_ignore=True` averages over labelled
pixels only, like `F.cross_entropy`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.van import LightHamOutputs


class LightHamCriterion(nn.Module):
    """loss = weight * CE(main); returns {"loss", "main"} (the term detached)."""

    def __init__(self, ignore_index: int = 255, loss_weight: float = 1.0, avg_non_ignore: bool = False):
        super().__init__()
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight
        self.avg_non_ignore = avg_non_ignore

    def forward(
        self, outputs: LightHamOutputs, target: torch.Tensor, edge: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        """`edge` is accepted for the common criterion signature and not used."""
        if not isinstance(outputs, LightHamOutputs):
            raise TypeError(
                f"LightHamCriterion expects LightHamOutputs (a VAN Light-Ham model built with "
                f"aux_heads=True), got {type(outputs).__name__}"
            )
        logits = F.interpolate(outputs.main.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
        pixel = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        if self.avg_non_ignore:
            denom = (target != self.ignore_index).sum().clamp(min=1)
        else:
            denom = target.numel()
        main = self.loss_weight * pixel.sum() / denom
        return {"loss": main, "main": main.detach()}
