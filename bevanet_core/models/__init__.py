"""Model registry: one plain dictionary and one public constructor.

from bevanet_core.models import build_model
model = build_model("bevanet_s", num_classes=11)                   # inference: main logits
model = build_model("bevanet_s", num_classes=11, aux_heads=True)   # training: (aux, main, boundary)
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from . import bevanet as _bevanet
from . import bisenetv2 as _bisenetv2
from . import bssnet as _bssnet
from . import pidnet as _pidnet
from . import stdc as _stdc
from . import van as _van
from .bevanet import BEVANet, BEVANetClassifier, SegmentationOutputs

SEGMENTATION_MODELS: dict[str, Callable[..., nn.Module]] = {
    "bevanet": _bevanet.bevanet,
    "bevanet_s": _bevanet.bevanet_s,
    "pidnet_s": _pidnet.pidnet_s,
    "pidnet_m": _pidnet.pidnet_m,
    "pidnet_l": _pidnet.pidnet_l,
    "bisenetv2": _bisenetv2.bisenetv2,
    "stdc1": _stdc.stdc1,
    "stdc2": _stdc.stdc2,
    "bssnet_t": _bssnet.bssnet_t,
    "bssnet_b": _bssnet.bssnet_b,
    "van_tiny_lightham": _van.van_tiny_lightham,
    "van_tiny_lightham_d256": _van.van_tiny_lightham_d256,
    "van_small_lightham": _van.van_small_lightham,
    "van_base_lightham": _van.van_base_lightham,
    "van_large_lightham": _van.van_large_lightham,
}
CLASSIFIER_MODELS: dict[str, Callable[..., nn.Module]] = {
    "bevanet_cls": _bevanet.bevanet_cls,
    "bevanet_s_cls": _bevanet.bevanet_s_cls,
}


def list_models(task: str = "segmentation") -> list[str]:
    """Registered names for `task` ('segmentation' or 'classification')."""
    registry = SEGMENTATION_MODELS if task == "segmentation" else CLASSIFIER_MODELS
    return sorted(registry)


def build_model(name: str, num_classes: int = 19, aux_heads: bool = False, **kwargs) -> nn.Module:
    """Builds a registered network by name.

    Segmentation models return logits at `model.output_stride` of the input (1/8; BSSNet-B 1/4);
    with `aux_heads=True` they return their family's training outputs (BEVANet and PIDNet:
    `SegmentationOutputs(aux, main, boundary)`). Classifier names end in `_cls`.
    """
    if name in SEGMENTATION_MODELS:
        return SEGMENTATION_MODELS[name](num_classes=num_classes, aux_heads=aux_heads, **kwargs)
    if name in CLASSIFIER_MODELS:
        if aux_heads:
            raise ValueError(f"classifier '{name}' has no auxiliary heads")
        return CLASSIFIER_MODELS[name](num_classes=num_classes, **kwargs)
    known = ", ".join(list_models() + list_models("classification"))
    raise ValueError(f"unknown model '{name}'; known models: {known}")


__all__ = [
    "build_model",
    "list_models",
    "BEVANet",
    "BEVANetClassifier",
    "SegmentationOutputs",
    "SEGMENTATION_MODELS",
    "CLASSIFIER_MODELS",
]
