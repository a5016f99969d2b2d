"""Building blocks shared by the segmentation networks.

Attribute names follow the authors' code (PIDNet / BEVANet) so that their released
checkpoints map one to one onto these modules without a renaming table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.1

NormLayer = Callable[[int], nn.Module]


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class DWConv(nn.Module):
    """Depthwise convolution with bias (the `.dwconv` wrapper keeps the authors' tensor names)."""

    def __init__(self, dim: int, kernel_size=3, padding=1, dilation=1, bias: bool = True):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, 1, padding, dilation, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x)


class PWConv(nn.Module):
    """Pointwise (1x1) convolution; bias on by default as inside the attention modules."""

    def __init__(self, in_channels: int, out_channels: Optional[int] = None, bias: bool = True):
        super().__init__()
        self.pwconv = nn.Conv2d(in_channels, out_channels or in_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwconv(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        no_relu: bool = False,
        norm_layer: NormLayer = batch_norm,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else self.relu(out)


class Bottleneck(nn.Module):
    expansion = 2

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        no_relu: bool = True,
        norm_layer: NormLayer = batch_norm,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else self.relu(out)


def make_layer(
    block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int = 1, norm_layer: NormLayer = batch_norm
) -> nn.Sequential:
    """A ResNet stage. As in PIDNet, the last of several blocks has no final ReLU; a single
    block keeps its default (ReLU for BasicBlock, none for Bottleneck)."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            norm_layer(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample, norm_layer=norm_layer)]
    inplanes = planes * block.expansion
    for i in range(1, blocks):
        layers.append(block(inplanes, planes, 1, no_relu=(i == blocks - 1), norm_layer=norm_layer))
    return nn.Sequential(*layers)


class SegmentHead(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv1x1. Logits stay at the input's resolution."""

    def __init__(self, inplanes: int, interplanes: int, outplanes: int, norm_layer: NormLayer = batch_norm):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.conv1 = nn.Conv2d(inplanes, interplanes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(interplanes)
        self.conv2 = nn.Conv2d(interplanes, outplanes, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(x)))


def channel_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of an NCHW tensor, one pixel at a time.

    The result is made contiguous (NCHW), as the authors' `permute(0, 3, 1, 2).contiguous()`:
    the permuted view is channels-last, and the CPU's bf16 weight gradient of a dilated depthwise
    conv (oneDNN, torch 2.13) is wrong for channels-last inputs, with no error: 7x7 dilation 3
    and 3x3 dilation 2 from 30x30 up, 11x1 dilation (3, 1) from 64x64 up, 130-180% off or
    overflowing (`studies/cpu_bf16_conv_grads.py`). VAN trained to NaN in bf16 from it;
    BEVANet's dilated convs follow these norms too. test_models.py checks every network.
    """
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def dilated_depthwise_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(name, conv) of the grouped convs with a dilation above 1 (see `channel_layer_norm`)."""
    return [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and max(m.dilation) > 1
    ]


def resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of x to ref's spatial size (align_corners=False, as the authors)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def init_fan_out_normal(module: nn.Module) -> None:
    """Init used inside the EVA blocks: conv weights ~ N(0, sqrt(2 / fan_out)), bias 0."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_kaiming_conv_norm(model: nn.Module, norm_types=(nn.BatchNorm2d,)) -> None:
    """Conv weights ~ Kaiming normal (fan_out, ReLU gain), conv biases 0, norms 1 and 0: the init
    of BiSeNetV2 (mmseg) and BSSNet, and with GroupNorm mmcv's ConvModule init (Light-Ham head)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, norm_types):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class TrainingHeadsMixin:
    """`without_aux_heads()` for segmentation networks whose training-only modules are named in
    the class attribute `TRAINING_HEADS` (also read by the checkpoint loader, which skips their
    tensors when loading into an inference model)."""

    TRAINING_HEADS: tuple[str, ...] = ()

    def without_aux_heads(self):
        """Drops the training-only heads in place; the model then returns main logits only."""
        for name in self.TRAINING_HEADS:
            if hasattr(self, name):
                delattr(self, name)
        self.aux_heads = False
        return self
