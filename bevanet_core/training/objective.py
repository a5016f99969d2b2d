"""The training objective of every registered family, chosen from the type of the model's
training outputs: BEVANet and PIDNet (losses.BEVANetCriterion), BiSeNetV2, STDC-Seg, BSSNet and
VAN + Light-Ham."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models.bevanet import SegmentationOutputs
from ..models.bisenetv2 import BiSeNetV2Outputs
from ..models.bssnet import BSSNetOutputs
from ..models.stdc import STDCOutputs
from ..models.van import LightHamOutputs
from .bssnet_loss import BSSNetCriterion
from .lightham_loss import LightHamCriterion
from .losses import BEVANetCriterion, BiSeNetV2Criterion, STDCCriterion


class TrainingObjective(nn.Module):
    """Picks each model family's own objective from the type of its training outputs."""

    def __init__(self, bevanet: BEVANetCriterion, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index
        self.bevanet = bevanet  # BEVANet and PIDNet: (aux, main, boundary)
        self.bisenetv2 = BiSeNetV2Criterion(ignore_index)
        self.stdc = STDCCriterion(ignore_index)
        weights = None if bevanet.class_weight is None else bevanet.class_weight.tolist()
        self.bssnet = BSSNetCriterion(
            ignore_index, bevanet.ohem.thresh, bevanet.ohem.min_kept, class_weights=weights
        )  # OHEM and class weights: as BEVANet's
        self.lightham = LightHamCriterion(ignore_index)

    def forward(self, outputs, target: torch.Tensor, edge: torch.Tensor) -> dict[str, torch.Tensor]:
        if not bool((target != self.ignore_index).any()):
            # a batch of unannotated frames (every label void) teaches nothing: a zero loss that
            # keeps the graph, where the families' means over no pixel would be 0 / 0
            return {"loss": sum(t.float().sum() for t in outputs if isinstance(t, torch.Tensor)) * 0.0}
        if isinstance(outputs, SegmentationOutputs):
            return self.bevanet(outputs, target, edge)
        if isinstance(outputs, BiSeNetV2Outputs):
            return self.bisenetv2(outputs, target)
        if isinstance(outputs, STDCOutputs):
            return self.stdc(outputs, target)
        if isinstance(outputs, BSSNetOutputs):
            return self.bssnet(outputs, target, edge)
        if isinstance(outputs, LightHamOutputs):
            return self.lightham(outputs, target)
        raise TypeError(
            f"no training objective for model outputs of type {type(outputs).__name__}; build "
            "the model with aux_heads=True (a registered segmentation family)"
        )
