"""BEVANet: bilateral efficient visual attention network (ICIP 2025).

Read top to bottom: fusion blocks (PagFM, BGAF), the pyramid pooling module (DLKPPM), the
segmentation network, the ImageNet classifier used for pretraining, then the registered
variants; the attention blocks (CKS, SDLSKA, LSKA, EVA) are in eva.py.

The topology and every tensor name follow the authors' code (maomao0819/BEVANet, built on
PIDNet), so their checkpoints load one to one. The only departure is the forward contract:
a model built with `aux_heads=True` always returns `SegmentationOutputs(aux, main, boundary)`
and one built without them always returns the main logits, whatever `.training` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .eva import LSKA, EVABlock, SpatialAttention
from .layers import (
    BasicBlock,
    Bottleneck,
    PWConv,
    SegmentHead,
    TrainingHeadsMixin,
    batch_norm,
    channel_layer_norm,
    make_layer,
    resize_to,
)


class SegmentationOutputs(NamedTuple):
    """Logits at 1/8 of the input: auxiliary (fusion-3 tap), main, and 1-channel boundary."""

    aux: torch.Tensor
    main: torch.Tensor
    boundary: torch.Tensor


# --------------------------------------------------------------------------- fusion


class PagFM(nn.Module):
    """Pixel-attention-guided fusion (PIDNet): the semantic branch y guides the detail branch x."""

    def __init__(self, channels: int, mid_channels: int):
        super().__init__()
        self.f_x = nn.Sequential(nn.Conv2d(channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.f_y = nn.Sequential(nn.Conv2d(channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_q = resize_to(self.f_y(y), x)
        x_k = self.f_x(x)
        sim = torch.sigmoid(torch.sum(x_k * y_q, dim=1, keepdim=True))
        return (1 - sim) * x + sim * resize_to(y, x)


def _bn_relu_conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1, pointwise: bool = False) -> nn.Sequential:
    conv = (
        PWConv(cin, cout, bias=False)
        if pointwise
        else nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False)
    )
    return nn.Sequential(batch_norm(cin), nn.ReLU(inplace=True), conv)


class BGAF(nn.Module):
    """Boundary-guided adaptive fusion of detail p, semantic i and boundary d features."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_p = _bn_relu_conv(channels, channels)
        self.conv_i = _bn_relu_conv(channels, channels)
        self.out = _bn_relu_conv(channels, channels)

    def forward(self, p: torch.Tensor, i: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        p, i = self.conv_p(p), self.conv_i(i)
        s = torch.sigmoid(d)
        return self.out(s * p + (1 - s) * i + (p + i))


class DLKPPM(nn.Module):
    """Dilated large-kernel pyramid pooling: a cascade of pooled branches and an LSKA branch."""

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int):
        super().__init__()

        def pooled(pool: nn.Module) -> nn.Sequential:
            return nn.Sequential(pool, *_bn_relu_conv(inplanes, branch_planes, pointwise=True))

        self.scale1 = pooled(nn.AvgPool2d(5, 2, 2))
        self.scale2 = pooled(nn.AvgPool2d(9, 4, 4))
        self.scale4 = pooled(nn.AdaptiveAvgPool2d(2))
        self.scale5 = pooled(nn.AdaptiveAvgPool2d(1))
        self.scale0 = _bn_relu_conv(inplanes, branch_planes, pointwise=True)
        self.bn = batch_norm(branch_planes)
        self.lska = SpatialAttention(branch_planes, LSKA(branch_planes, 35))
        self.layer_scale_lska = nn.Parameter(torch.full((branch_planes,), 1e-2))
        self.process1 = _bn_relu_conv(branch_planes, branch_planes, dilation=2)
        self.process2 = _bn_relu_conv(branch_planes, branch_planes, dilation=2)
        self.process_lska = _bn_relu_conv(branch_planes, branch_planes)
        self.process4 = _bn_relu_conv(branch_planes, branch_planes)
        self.process5 = _bn_relu_conv(branch_planes, branch_planes)
        self.compression = _bn_relu_conv(branch_planes * 6, outplanes, pointwise=True)
        self.shortcut = _bn_relu_conv(inplanes, outplanes, pointwise=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.scale0(x)
        lska = y0 + self.layer_scale_lska[:, None, None] * self.lska(self.bn(y0))
        y1 = self.process1(resize_to(self.scale1(x), x) + y0)
        y2 = self.process2(resize_to(self.scale2(x), x) + y1)
        y3 = self.process_lska(lska + y2)
        y4 = self.process4(resize_to(self.scale4(x), x) + y3)
        y5 = self.process5(resize_to(self.scale5(x), x) + y4)
        return self.compression(torch.cat([y0, y1, y2, y3, y4, y5], dim=1)) + self.shortcut(x)


# --------------------------------------------------------------------------- networks


class BEVANetBackbone(nn.Module):
    """Stem, shared layers 1-2, the semantic branch to 1/32 and the detail branch at 1/8."""

    def __init__(
        self,
        planes: int = 64,
        blocks: Sequence[int] = (2, 2, 4, 4, 2),
        semantic_kernel: int = 35,
        detail_kernel: int = 23,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        c = planes
        self.planes = c
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, c, 3, 2, 1),
            batch_norm(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 2, 1),
            batch_norm(c),
            nn.ReLU(inplace=True),
        )
        self.layer1 = make_layer(BasicBlock, c, c, blocks[0])
        self.layer2 = make_layer(BasicBlock, c, 2 * c, blocks[1], stride=2)
        # semantic branch
        self.layer3_semantic = make_layer(BasicBlock, 2 * c, 4 * c, blocks[2], stride=2)
        self.layer4_down_semantic = make_layer(BasicBlock, 4 * c, 8 * c, 1, stride=2)
        self.layer4_semantic_1 = EVABlock(8 * c, semantic_kernel, mlp_ratio)
        self.norm4_semantic_1 = nn.LayerNorm(8 * c)
        self.layer4_semantic_2 = EVABlock(8 * c, semantic_kernel, mlp_ratio)
        self.norm4_semantic_2 = nn.LayerNorm(8 * c)
        # detail branch, fed by the semantic branch through two PagFMs
        self.layer3_detail = make_layer(BasicBlock, 2 * c, 2 * c, blocks[0])
        self.compression3 = nn.Sequential(nn.Conv2d(4 * c, 2 * c, 1, bias=False), batch_norm(2 * c))
        self.fuse_sd_3 = PagFM(2 * c, c)
        self.layer4_detail_conv = make_layer(BasicBlock, 2 * c, 2 * c, 1)
        self.layer4_detail = EVABlock(2 * c, detail_kernel, mlp_ratio)
        self.norm4_detail = nn.LayerNorm(2 * c)
        self.compression4 = nn.Sequential(nn.Conv2d(8 * c, 2 * c, 1, bias=False), batch_norm(2 * c))
        self.fuse_sd_4 = PagFM(2 * c, c)
        self.layer5_detail_semantic = make_layer(Bottleneck, 2 * c, 2 * c, 1)

    def forward_branches(self, x: torch.Tensor):
        """Returns (semantic 8c @1/32, detail-semantic 4c @1/8, detail 2c @1/8, aux tap 2c @1/8)."""
        x = F.relu(self.layer1(self.conv1(x)))
        x = F.relu(self.layer2(x))
        xs = F.relu(self.layer3_semantic(x))
        xd = self.layer3_detail(x)
        # the authors' in-place ReLU also rectifies the tensor kept for the aux head
        xd = F.relu(self.fuse_sd_3(xd, self.compression3(xs)))
        aux_tap = xd
        xs = channel_layer_norm(self.norm4_semantic_1, self.layer4_semantic_1(self.layer4_down_semantic(xs)))
        xs = channel_layer_norm(self.norm4_semantic_2, self.layer4_semantic_2(xs))
        xd = channel_layer_norm(self.norm4_detail, self.layer4_detail(self.layer4_detail_conv(xd)))
        xd = self.fuse_sd_4(xd, self.compression4(xs))
        return xs, self.layer5_detail_semantic(xd), xd, aux_tap


class BEVANet(TrainingHeadsMixin, BEVANetBackbone):
    """Semantic segmentation network. Input H and W must be multiples of 8; logits come out at 1/8."""

    TRAINING_HEADS = ("seghead_ds", "seghead_db")  # modules built only with aux_heads=True

    output_stride = 8  # logits come out at 1/8 of the input (read by the export metadata)

    def __init__(
        self,
        num_classes: int = 19,
        planes: int = 64,
        blocks: Sequence[int] = (2, 2, 4, 4, 2),
        ppm_planes: int = 96,
        head_planes: int = 128,
        aux_heads: bool = False,
        semantic_kernel: int = 35,
        detail_kernel: int = 23,
        mlp_ratio: int = 4,
    ):
        super().__init__(planes, blocks, semantic_kernel, detail_kernel, mlp_ratio)
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        c = planes
        self.num_classes = num_classes
        self.layer5_down_semantic_seg = make_layer(BasicBlock, 8 * c, 16 * c, 1, stride=2)
        self.layer5_semantic_1_seg = EVABlock(16 * c, semantic_kernel, mlp_ratio)
        self.norm5_semantic_1_seg = nn.LayerNorm(16 * c)
        self.layer5_semantic_2_seg = EVABlock(16 * c, semantic_kernel, mlp_ratio)
        self.norm5_semantic_2_seg = nn.LayerNorm(16 * c)
        self.layer5_detail_boundary = make_layer(Bottleneck, 2 * c, 2 * c, 1)
        self.spp = DLKPPM(16 * c, ppm_planes, 4 * c)
        self.dfm = BGAF(4 * c)
        self.aux_heads = aux_heads
        if aux_heads:
            self.seghead_ds = SegmentHead(2 * c, head_planes, num_classes)
            self.seghead_db = SegmentHead(2 * c, c, 1)
        self.head = SegmentHead(4 * c, head_planes, num_classes)

    def forward(self, x: torch.Tensor):
        xs, xds, xd, aux_tap = self.forward_branches(x)
        xs = channel_layer_norm(
            self.norm5_semantic_1_seg, self.layer5_semantic_1_seg(self.layer5_down_semantic_seg(xs))
        )
        xs = channel_layer_norm(self.norm5_semantic_2_seg, self.layer5_semantic_2_seg(xs))
        xdb = self.layer5_detail_boundary(xd)
        main = self.head(self.dfm(xds, resize_to(self.spp(xs), xds), xdb))
        if not self.aux_heads:
            return main
        return SegmentationOutputs(self.seghead_ds(aux_tap), main, self.seghead_db(xd))


class BEVANetClassifier(BEVANetBackbone):
    """ImageNet classifier sharing the segmentation backbone, used for pretraining."""

    def __init__(
        self,
        num_classes: int = 1000,
        planes: int = 64,
        blocks: Sequence[int] = (2, 2, 4, 4, 2),
        last_planes: int = 2048,
        semantic_kernel: int = 35,
        detail_kernel: int = 23,
        mlp_ratio: int = 4,
    ):
        super().__init__(planes, blocks, semantic_kernel, detail_kernel, mlp_ratio)
        c = planes
        self.num_classes = num_classes
        self.layer5_down_semantic_cls = make_layer(Bottleneck, 8 * c, 8 * c, 1)
        self.layer5_semantic_1_cls = EVABlock(16 * c, semantic_kernel, mlp_ratio)
        self.norm5_semantic_1_cls = nn.LayerNorm(16 * c)
        self.layer5_semantic_2_cls = EVABlock(16 * c, semantic_kernel, mlp_ratio)
        self.norm5_semantic_2_cls = nn.LayerNorm(16 * c)
        self.layer5_semantic_bn_cls = make_layer(Bottleneck, 16 * c, 8 * c, 1)
        self.layer5_down = nn.Sequential(
            nn.Conv2d(4 * c, 8 * c, 3, 2, 1, bias=False),
            batch_norm(8 * c),
            nn.ReLU(inplace=True),
            nn.Conv2d(8 * c, 16 * c, 3, 2, 1, bias=False),
            batch_norm(16 * c),
        )
        self.last_layer = nn.Sequential(
            nn.Conv2d(16 * c, last_planes, 1, bias=False),
            batch_norm(last_planes),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(last_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, xds, _, _ = self.forward_branches(x)
        xs = channel_layer_norm(
            self.norm5_semantic_1_cls, self.layer5_semantic_1_cls(self.layer5_down_semantic_cls(xs))
        )
        xs = channel_layer_norm(self.norm5_semantic_2_cls, self.layer5_semantic_2_cls(xs))
        xs = self.layer5_semantic_bn_cls(xs) + self.layer5_down(xds)
        return self.head(self.last_layer(F.relu(xs)).flatten(1))

    def segmentation_state_dict(self) -> dict:
        """The backbone tensors a segmentation model initialises from (shared names)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_CLASSIFIER_ONLY)}


_CLASSIFIER_ONLY = (
    "layer5_down_semantic_cls",
    "layer5_semantic_1_cls",
    "norm5_semantic_1_cls",
    "layer5_semantic_2_cls",
    "norm5_semantic_2_cls",
    "layer5_semantic_bn_cls",
    "layer5_down.",
    "last_layer",
    "head.",
)


# --------------------------------------------------------------------------- variants

_VARIANTS = {
    "bevanet": dict(planes=64, blocks=(2, 2, 4, 4, 2)),
    "bevanet_s": dict(planes=32, blocks=(2, 2, 3, 3, 2)),
}


def _create_bevanet(variant: str, num_classes: int = 19, aux_heads: bool = False, **kwargs) -> BEVANet:
    return BEVANet(num_classes=num_classes, aux_heads=aux_heads, **{**_VARIANTS[variant], **kwargs})


def _create_classifier(variant: str, num_classes: int = 1000, **kwargs) -> BEVANetClassifier:
    return BEVANetClassifier(num_classes=num_classes, **{**_VARIANTS[variant], **kwargs})


def bevanet(**kwargs) -> BEVANet:
    return _create_bevanet("bevanet", **kwargs)


def bevanet_s(**kwargs) -> BEVANet:
    return _create_bevanet("bevanet_s", **kwargs)


def bevanet_cls(**kwargs) -> BEVANetClassifier:
    return _create_classifier("bevanet", **kwargs)


def bevanet_s_cls(**kwargs) -> BEVANetClassifier:
    return _create_classifier("bevanet_s", **kwargs)
