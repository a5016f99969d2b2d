"""PIDNet: a real-time network inspired by PID controllers (Xu et al., CVPR 2023).

BEVANet's parent. Three branches: I (integral, semantic context down to 1/64 with a pyramid
pooling module), P (proportional, detail at 1/8, guided by I through PagFM) and D (derivative,
boundary features at 1/8 fed by I's differences). A boundary-attention fusion (Bag / Light-Bag)
merges them. Read top to bottom: pyramid pooling (PAPPM, DAPPM), fusion (LightBag, Bag), the
network, then the registered variants.

Tensor names follow the authors' code (XuJiacong/PIDNet `models/pidnet.py`), so their
checkpoints load one to one. As for BEVANet, a model built with `aux_heads=True` always returns
`SegmentationOutputs(aux=P head, main, boundary=D head)`, one built without them the main logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bevanet import PagFM, SegmentationOutputs
from .layers import BasicBlock, Bottleneck, SegmentHead, TrainingHeadsMixin, batch_norm, make_layer, resize_to


def bn_relu_conv(cin: int, cout: int, kernel: int = 1, groups: int = 1) -> nn.Sequential:
    """Pre-activation BN-ReLU-conv (no bias), the unit of the pyramid pooling modules."""
    return nn.Sequential(
        batch_norm(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
    )


def conv_bn(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), batch_norm(cout))


def _pooled(pool: nn.Module, inplanes: int, branch_planes: int) -> nn.Sequential:
    return nn.Sequential(pool, *bn_relu_conv(inplanes, branch_planes))


def _pools(inplanes: int, branch_planes: int):
    return (
        _pooled(nn.AvgPool2d(5, 2, 2), inplanes, branch_planes),
        _pooled(nn.AvgPool2d(9, 4, 4), inplanes, branch_planes),
        _pooled(nn.AvgPool2d(17, 8, 8), inplanes, branch_planes),
        _pooled(nn.AdaptiveAvgPool2d(1), inplanes, branch_planes),
    )


# --------------------------------------------------------------------------- pyramid pooling


class PAPPM(nn.Module):
    """Parallel aggregation PPM (PIDNet-S/M): four pooled branches, one grouped 3x3 conv."""

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int):
        super().__init__()
        self.scale1, self.scale2, self.scale3, self.scale4 = _pools(inplanes, branch_planes)
        self.scale0 = bn_relu_conv(inplanes, branch_planes)
        self.scale_process = bn_relu_conv(branch_planes * 4, branch_planes * 4, 3, groups=4)
        self.compression = bn_relu_conv(branch_planes * 5, outplanes)
        self.shortcut = bn_relu_conv(inplanes, outplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.scale0(x)
        scales = [resize_to(s(x), x) + x0 for s in (self.scale1, self.scale2, self.scale3, self.scale4)]
        out = self.scale_process(torch.cat(scales, dim=1))
        return self.compression(torch.cat([x0, out], dim=1)) + self.shortcut(x)


class DAPPM(nn.Module):
    """Deep aggregation PPM (DDRNet; PIDNet-L): pooled branches refined in a cascade."""

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int):
        super().__init__()
        self.scale1, self.scale2, self.scale3, self.scale4 = _pools(inplanes, branch_planes)
        self.scale0 = bn_relu_conv(inplanes, branch_planes)
        self.process1 = bn_relu_conv(branch_planes, branch_planes, 3)
        self.process2 = bn_relu_conv(branch_planes, branch_planes, 3)
        self.process3 = bn_relu_conv(branch_planes, branch_planes, 3)
        self.process4 = bn_relu_conv(branch_planes, branch_planes, 3)
        self.compression = bn_relu_conv(branch_planes * 5, outplanes)
        self.shortcut = bn_relu_conv(inplanes, outplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.scale0(x)]
        for scale, process in (
            (self.scale1, self.process1),
            (self.scale2, self.process2),
            (self.scale3, self.process3),
            (self.scale4, self.process4),
        ):
            outs.append(process(resize_to(scale(x), x) + outs[-1]))
        return self.compression(torch.cat(outs, dim=1)) + self.shortcut(x)


# --------------------------------------------------------------------------- fusion


class LightBag(nn.Module):
    """Light boundary-attention-guided fusion (PIDNet-S/M; the authors' `Light_Bag`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_p = conv_bn(in_channels, out_channels)
        self.conv_i = conv_bn(in_channels, out_channels)

    def forward(self, p: torch.Tensor, i: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        edge = torch.sigmoid(d)
        return self.conv_p((1 - edge) * i + p) + self.conv_i(i + edge * p)


class Bag(nn.Module):
    """Boundary-attention-guided fusion (PIDNet-L): BN-ReLU-conv3x3 of the weighted mix."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = bn_relu_conv(in_channels, out_channels, 3)

    def forward(self, p: torch.Tensor, i: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        edge = torch.sigmoid(d)
        return self.conv(edge * p + (1 - edge) * i)


# --------------------------------------------------------------------------- network


class PIDNet(TrainingHeadsMixin, nn.Module):
    """Three-branch segmentation network. Input H and W must be multiples of 8; logits at 1/8.

    m: blocks per P-branch stage (and layers 1-2), n: blocks of I-branch layers 3-4,
    planes: base width C. m == 2 gives the S/M design (PAPPM, Light-Bag, bottleneck D branch),
    otherwise the L design (DAPPM, Bag, basic-block D branch).
    """

    TRAINING_HEADS = ("seghead_p", "seghead_d")  # modules built only with aux_heads=True

    output_stride = 8  # logits come out at 1/8 of the input (read by the export metadata)

    def __init__(
        self,
        num_classes: int = 19,
        m: int = 2,
        n: int = 3,
        planes: int = 64,
        ppm_planes: int = 96,
        head_planes: int = 128,
        aux_heads: bool = False,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        c = planes
        self.num_classes = num_classes
        # I branch
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, c, 3, 2, 1),
            batch_norm(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 2, 1),
            batch_norm(c),
            nn.ReLU(inplace=True),
        )
        self.layer1 = make_layer(BasicBlock, c, c, m)
        self.layer2 = make_layer(BasicBlock, c, 2 * c, m, stride=2)
        self.layer3 = make_layer(BasicBlock, 2 * c, 4 * c, n, stride=2)
        self.layer4 = make_layer(BasicBlock, 4 * c, 8 * c, n, stride=2)
        self.layer5 = make_layer(Bottleneck, 8 * c, 8 * c, 2, stride=2)
        # P branch
        self.compression3 = conv_bn(4 * c, 2 * c)
        self.compression4 = conv_bn(8 * c, 2 * c)
        self.pag3 = PagFM(2 * c, c)
        self.pag4 = PagFM(2 * c, c)
        self.layer3_ = make_layer(BasicBlock, 2 * c, 2 * c, m)
        self.layer4_ = make_layer(BasicBlock, 2 * c, 2 * c, m)
        self.layer5_ = make_layer(Bottleneck, 2 * c, 2 * c, 1)
        # D branch
        if m == 2:
            self.layer3_d = _single_block(BasicBlock, 2 * c, c)
            self.layer4_d = make_layer(Bottleneck, c, c, 1)
            self.diff3 = conv_bn(4 * c, c, 3)
            self.spp = PAPPM(16 * c, ppm_planes, 4 * c)
            self.dfm = LightBag(4 * c, 4 * c)
        else:
            self.layer3_d = _single_block(BasicBlock, 2 * c, 2 * c)
            self.layer4_d = _single_block(BasicBlock, 2 * c, 2 * c)
            self.diff3 = conv_bn(4 * c, 2 * c, 3)
            self.spp = DAPPM(16 * c, ppm_planes, 4 * c)
            self.dfm = Bag(4 * c, 4 * c)
        self.diff4 = conv_bn(8 * c, 2 * c, 3)
        self.layer5_d = make_layer(Bottleneck, 2 * c, 2 * c, 1)
        # heads
        self.aux_heads = aux_heads
        if aux_heads:
            self.seghead_p = SegmentHead(2 * c, head_planes, num_classes)
            self.seghead_d = SegmentHead(2 * c, c, 1)
        self.final_layer = SegmentHead(4 * c, head_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor):
        x = self.layer1(self.conv1(x))
        x = F.relu(self.layer2(F.relu(x)))
        x_p = self.layer3_(x)
        x_d = self.layer3_d(x)
        x = F.relu(self.layer3(x))
        # the authors rectify the P and D taps in place before the next stage, so the
        # auxiliary heads see the rectified features: take the taps after the ReLU
        x_p = F.relu(self.pag3(x_p, self.compression3(x)))
        x_d = F.relu(x_d + resize_to(self.diff3(x), x_d))
        p_tap = x_p
        x = F.relu(self.layer4(x))
        x_p = self.layer4_(x_p)
        x_d = self.layer4_d(x_d)
        x_p = F.relu(self.pag4(x_p, self.compression4(x)))
        x_d = F.relu(x_d + resize_to(self.diff4(x), x_d))
        d_tap = x_d
        x_p = self.layer5_(x_p)
        x_d = self.layer5_d(x_d)
        x = resize_to(self.spp(self.layer5(x)), x_d)
        main = self.final_layer(self.dfm(x_p, x, x_d))
        if not self.aux_heads:
            return main
        return SegmentationOutputs(self.seghead_p(p_tap), main, self.seghead_d(d_tap))


def _single_block(block, inplanes: int, planes: int) -> nn.Module:
    """One block without its final ReLU (the authors' `_make_single_layer`)."""
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = conv_bn(inplanes, planes * block.expansion)
    return block(inplanes, planes, 1, downsample, no_relu=True)


# --------------------------------------------------------------------------- variants

_VARIANTS = {
    "pidnet_s": dict(m=2, n=3, planes=32, ppm_planes=96, head_planes=128),
    "pidnet_m": dict(m=2, n=3, planes=64, ppm_planes=96, head_planes=128),
    "pidnet_l": dict(m=3, n=4, planes=64, ppm_planes=112, head_planes=256),
}


def _create_pidnet(variant: str, num_classes: int = 19, aux_heads: bool = False, **kwargs) -> PIDNet:
    return PIDNet(num_classes=num_classes, aux_heads=aux_heads, **{**_VARIANTS[variant], **kwargs})


def pidnet_s(**kwargs) -> PIDNet:
    return _create_pidnet("pidnet_s", **kwargs)


def pidnet_m(**kwargs) -> PIDNet:
    return _create_pidnet("pidnet_m", **kwargs)


def pidnet_l(**kwargs) -> PIDNet:
    return _create_pidnet("pidnet_l", **kwargs)
