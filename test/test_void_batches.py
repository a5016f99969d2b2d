"""A batch of unannotated frames (every label void) contributes zero loss in every family, with
finite zero gradients, instead of a 0 / 0 mean that ends the run as 'loss became nan'."""

import pytest
import torch

from bevanet_core.models import build_model
from bevanet_core.training.config import load_config
from bevanet_core.training.engine import build_criterion


@pytest.mark.parametrize("variant", ["bevanet_s", "pidnet_s", "bisenetv2", "stdc1", "bssnet_t", "van_tiny_lightham"])
def test_void_only_batch_gives_zero_loss_and_zero_gradients(variant):
    criterion = build_criterion(load_config(None, [f"model.variant={variant}"]))
    model = build_model(variant, 11, aux_heads=True).train()
    outputs = model(torch.randn(2, 3, 64, 64))
    void = torch.full((2, 64, 64), 255, dtype=torch.long)
    loss = criterion(outputs, void, torch.zeros(2, 64, 64))["loss"]
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert loss.item() == 0.0 and grads and all(bool((g == 0).all()) for g in grads)


def test_one_labelled_pixel_is_enough_to_learn_from():
    criterion = build_criterion(load_config(None, []))
    model = build_model("bevanet_s", 11, aux_heads=True).train()
    target = torch.full((2, 64, 64), 255, dtype=torch.long)
    target[0, 30, 30] = 3
    loss = criterion(model(torch.randn(2, 3, 64, 64)), target, torch.zeros(2, 64, 64))["loss"]
    assert torch.isfinite(loss) and loss.item() > 0
