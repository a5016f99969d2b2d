"""Parameter and multiply-accumulate counts (conv + linear, as the papers' "GFLOPs")."""

from __future__ import annotations

import torch
import torch.nn as nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass at (height, width), batch 1.

    Counts every Conv2d (out elements x in_channels/groups x kernel area) and Linear
    (in x out per row), plus the matrix products of modules that declare them with a
    `matmul_macs(input_shape)` method (Light-Ham's NMF). Bias additions, normalisation,
    activations and resizing are not counted, which is the convention behind the published
    figures.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    def matmul_hook(module: nn.Module, inputs, _output) -> None:
        nonlocal total
        total += int(module.matmul_macs(inputs[0].shape))

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif hasattr(m, "matmul_macs"):
            handles.append(m.register_forward_hook(matmul_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
