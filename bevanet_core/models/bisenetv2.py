"""BiSeNetV2: bilateral network with guided aggregation (Yu et al., IJCV 2021).

A wide, shallow detail branch (128 channels at 1/8) and a narrow, deep semantic branch
(gather-and-expand layers down to 1/32, context embedding), merged by bilateral guided
aggregation. Read top to bottom: building blocks, the two branches, BGA, heads, the network,
then the registered variant.

Tensor names and heads follow CoinCheung/BiSeNet `lib/models/bisenetv2.py`, whose inference
graph equals mmsegmentation's except that its BGA upsamples nearest (mmsegmentation: bilinear;
same parameters and MACs); booster heads are that code's, not mmseg's FCN heads. Contract
departures: the main logits
stay at 1/8 (the runtime upsamples), and `aux_heads=True` adds the four booster heads, returned
as `BiSeNetV2Outputs(main, aux2, aux3, aux4, aux5_4)` (boosters at 1/2 ... 1/16).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import TrainingHeadsMixin, init_kaiming_conv_norm


class BiSeNetV2Outputs(NamedTuple):
    """Training outputs: main logits (1/8) and the booster logits on the stem, S3, S4 and S5
    before the context embedding; each booster head upsamples its feature 2x first, so they
    come out at 1/2, 1/4, 1/8 and 1/16."""

    main: torch.Tensor
    aux2: torch.Tensor
    aux3: torch.Tensor
    aux4: torch.Tensor
    aux5_4: torch.Tensor


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _dw_bn(channels: int, cout: int, stride: int = 1) -> list:
    """Depthwise 3x3 (channel multiplier cout / channels) + BN."""
    return [
        nn.Conv2d(channels, cout, 3, stride, 1, groups=channels, bias=False),
        nn.BatchNorm2d(cout),
    ]


def _pw_bn(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]


# --------------------------------------------------------------------------- branches


class DetailBranch(nn.Module):
    """Three stages of plain 3x3 CBRs: 64 at 1/2, 64 at 1/4, 128 at 1/8."""

    def __init__(self):
        super().__init__()
        self.S1 = nn.Sequential(ConvBNReLU(3, 64, stride=2), ConvBNReLU(64, 64))
        self.S2 = nn.Sequential(ConvBNReLU(64, 64, stride=2), ConvBNReLU(64, 64), ConvBNReLU(64, 64))
        self.S3 = nn.Sequential(ConvBNReLU(64, 128, stride=2), ConvBNReLU(128, 128), ConvBNReLU(128, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.S3(self.S2(self.S1(x)))


class StemBlock(nn.Module):
    """16 channels at 1/4: a strided conv branch and a max-pool branch, concatenated and fused."""

    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 16, stride=2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, stride=2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class CEBlock(nn.Module):
    """Context embedding: global average pool, BN, 1x1 CBR, broadcast add, 3x3 CBR."""

    def __init__(self, channels: int = 128):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv_gap = ConvBNReLU(channels, channels, 1)
        self.conv_last = ConvBNReLU(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gap = self.conv_gap(self.bn(torch.mean(x, dim=(2, 3), keepdim=True)))
        return self.conv_last(gap + x)


class GELayerS1(nn.Module):
    """Gather-and-expand layer, stride 1: 3x3 CBR, depthwise expand x6, 1x1 project, residual."""

    def __init__(self, cin: int, cout: int, expand: int = 6):
        super().__init__()
        mid = cin * expand
        self.conv1 = ConvBNReLU(cin, cin)
        self.dwconv = nn.Sequential(*_dw_bn(cin, mid), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(*_pw_bn(mid, cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.dwconv(self.conv1(x))) + x)


class GELayerS2(nn.Module):
    """Gather-and-expand layer, stride 2, with a depthwise-separable shortcut."""

    def __init__(self, cin: int, cout: int, expand: int = 6):
        super().__init__()
        mid = cin * expand
        self.conv1 = ConvBNReLU(cin, cin)
        self.dwconv1 = nn.Sequential(*_dw_bn(cin, mid, stride=2))
        self.dwconv2 = nn.Sequential(*_dw_bn(mid, mid), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(*_pw_bn(mid, cout))
        self.shortcut = nn.Sequential(*_dw_bn(cin, cin, stride=2), *_pw_bn(cin, cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.dwconv2(self.dwconv1(self.conv1(x))))
        return self.relu(out + self.shortcut(x))


class SegmentBranch(nn.Module):
    """Stem (16 @1/4), S3 (32 @1/8), S4 (64 @1/16), S5 (128 @1/32) and the context embedding."""

    def __init__(self):
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GELayerS2(16, 32), GELayerS1(32, 32))
        self.S4 = nn.Sequential(GELayerS2(32, 64), GELayerS1(64, 64))
        self.S5_4 = nn.Sequential(GELayerS2(64, 128), GELayerS1(128, 128), GELayerS1(128, 128), GELayerS1(128, 128))
        self.S5_5 = CEBlock(128)

    def forward(self, x: torch.Tensor):
        feat2 = self.S1S2(x)
        feat3 = self.S3(feat2)
        feat4 = self.S4(feat3)
        feat5_4 = self.S5_4(feat4)
        return feat2, feat3, feat4, feat5_4, self.S5_5(feat5_4)


# --------------------------------------------------------------------------- aggregation, heads


class BGALayer(nn.Module):
    """Bilateral guided aggregation: each branch gates the other at its own resolution."""

    def __init__(self, channels: int = 128):
        super().__init__()
        c = channels
        self.left1 = nn.Sequential(*_dw_bn(c, c), nn.Conv2d(c, c, 1, bias=False))
        self.left2 = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.AvgPool2d(3, 2, 1))
        self.right1 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.right2 = nn.Sequential(*_dw_bn(c, c), nn.Conv2d(c, c, 1, bias=False))
        self.conv = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, x_d: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
        left = self.left1(x_d) * torch.sigmoid(_nearest_to(self.right1(x_s), x_d))
        right = self.left2(x_d) * torch.sigmoid(self.right2(x_s))
        return self.conv(left + _nearest_to(right, x_d))


def _nearest_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling to ref's size: the reference's x4 when H, W are multiples of 32, and
    still defined for the multiples of 8 the runtime accepts (e.g. 480x360)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


class BiSeNetHead(nn.Module):
    """3x3 CBR, dropout 0.1, 1x1 classifier. Booster heads (`booster=True`) first upsample 2x
    and narrow to `up_factor**2` channels, as the reference; the final upsampling is left to the
    caller (runtime or loss), so logits keep the feature's resolution (2x for boosters)."""

    def __init__(self, cin: int, mid: int, num_classes: int, up_factor: int = 8, booster: bool = False):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.drop = nn.Dropout(0.1)
        mid2 = up_factor * up_factor if booster else mid
        first = nn.Sequential(nn.Upsample(scale_factor=2.0), ConvBNReLU(mid, mid2)) if booster else nn.Identity()
        self.conv_out = nn.Sequential(first, nn.Conv2d(mid2, num_classes, 1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.drop(self.conv(x)))


# --------------------------------------------------------------------------- network


class BiSeNetV2(TrainingHeadsMixin, nn.Module):
    """Semantic segmentation network. Input H and W must be multiples of 8; logits at 1/8."""

    TRAINING_HEADS = ("aux2", "aux3", "aux4", "aux5_4")  # modules built only with aux_heads=True

    output_stride = 8  # logits come out at 1/8 of the input (read by the export metadata)

    def __init__(self, num_classes: int = 19, head_planes: int = 1024, aux_heads: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.detail = DetailBranch()
        self.segment = SegmentBranch()
        self.bga = BGALayer(128)
        self.head = BiSeNetHead(128, head_planes, num_classes)
        self.aux_heads = aux_heads
        if aux_heads:
            self.aux2 = BiSeNetHead(16, 128, num_classes, up_factor=4, booster=True)
            self.aux3 = BiSeNetHead(32, 128, num_classes, up_factor=8, booster=True)
            self.aux4 = BiSeNetHead(64, 128, num_classes, up_factor=16, booster=True)
            self.aux5_4 = BiSeNetHead(128, 128, num_classes, up_factor=32, booster=True)
        init_kaiming_conv_norm(self)

    def forward(self, x: torch.Tensor):
        feat2, feat3, feat4, feat5_4, feat_s = self.segment(x)
        main = self.head(self.bga(self.detail(x), feat_s))
        if not self.aux_heads:
            return main
        return BiSeNetV2Outputs(main, self.aux2(feat2), self.aux3(feat3), self.aux4(feat4), self.aux5_4(feat5_4))


# --------------------------------------------------------------------------- variants


def bisenetv2(num_classes: int = 19, aux_heads: bool = False, **kwargs) -> BiSeNetV2:
    return BiSeNetV2(num_classes=num_classes, aux_heads=aux_heads, **kwargs)
