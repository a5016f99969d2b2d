"""BSSNet: boundary, semantic and spatial branches for real-time segmentation
(Shi et al., TCSVT 2024).

A PIDNet-style stem down to 1/8 feeds three branches: a semantic branch (ResNet stages to
1/64, a PAPPM and a top-down decoder of two LUAFMs back to 1/16), a border branch B and a
spatial ("AutoEncoder") branch D, both at 1/8 and both guided by the 1/16 semantic feature
through a LUAFM. A UMF weighs B, the semantic feature and D per pixel. During training a border
head on B's tap learns the label edges, an AutoEncoder decoder on D's tap reconstructs the
(normalised) input image, and two FCN heads supervise the semantic stages at 1/16 and 1/32.
Read top to bottom: convolution units, fusion modules (LUAFM, UMF), heads, the network, then
the registered variants.

Output stride is the design's own: BSSNet-T returns logits at 1/8; BSSNet-B adds a 3x3 CBR
and a x2 upsampling of the fused feature before its head, so it returns logits at 1/4
(`model.output_stride` is 8 or 4). Input H and W must be multiples of 8.

Tensor names follow SXQ-STUDY/BSSNet (`mmseg/models/backbones/bssnet.py`, 0972491: `stem`,
`i_branch_layers`, `b_branch_layers`, `compression_b`, `uafm_ib`, `spp`, `uafm4`, `fuse_bdi`,
`upconv`, ...), with the backbone and heads in one module (no `backbone.` / `decode_head.`
prefixes). Departures, all in naming only: the ResNet blocks, stages and the PAPPM are the
project's shared PIDNet ones (`conv1`/`bn1`, `downsample.0/1`, `scale0`..`scale4`,
`scale_process` instead of mmcv's `conv1.conv`/`conv1.bn`, `downsample.conv/bn`, `scales.i`,
`processes`); the heads own their classifiers (`fuse_b_d_head.conv2` for the authors'
`decode_head.conv_seg`, `b_head.conv2` for `b_cls_seg`, ...); the FCN aux heads are
`auxiliary_head.0/1` as in mmseg. No checkpoints were released, so nothing maps onto them.

The authors upsample BSSNet-B's fused feature with mmseg's `resize(out, scale_factor=2)`,
whose default mode is nearest; this file does the same. Every other resize targets an
explicit size (so odd 1/32 and 1/64 maps work); this x2 is exact for any size and keeps the
exported graph static.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (
    BasicBlock,
    Bottleneck,
    SegmentHead,
    TrainingHeadsMixin,
    batch_norm,
    init_kaiming_conv_norm,
    make_layer,
)
from .pidnet import PAPPM


class BSSNetOutputs(NamedTuple):
    """Training outputs. `main`: logits at `output_stride`; `border`: 1-channel border logits
    (1/8); `reconstruction`: the AutoEncoder's 3-channel image (1/8); `aux3`, `aux4`: FCN logits
    at 1/16 and 1/32; `image`: the normalised network input the reconstruction is measured
    against (the same tensor the model was called with)."""

    main: torch.Tensor
    border: torch.Tensor
    reconstruction: torch.Tensor
    aux3: torch.Tensor
    aux4: torch.Tensor
    image: torch.Tensor


# --------------------------------------------------------------------------- convolution units


class ConvModule(nn.Module):
    """conv (no bias) + BN (+ ReLU): mmcv's `ConvModule` with a norm, as the authors use it."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = batch_norm(cout)
        self.activate = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class ConvBN(nn.Module):
    """conv (no bias) + BN; the authors' `ConvBN` inside the attention of LUAFM and UMF."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False)
        self._batch_norm = batch_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._batch_norm(self._conv(x))


class ConvBNReLU(ConvBN):
    """conv (no bias) + BN + ReLU; the authors' `ConvBNReLU`."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__(cin, cout, kernel)
        self._relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._relu(self._batch_norm(self._conv(x)))


# --------------------------------------------------------------------------- fusion


def avg_max_reduce_channel(*xs: torch.Tensor) -> torch.Tensor:
    """[mean_c x0, max_c x0, mean_c x1, max_c x1, ...]: two 1-channel maps per input."""
    maps = []
    for x in xs:
        maps += [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)]
    return torch.cat(maps, dim=1)


def _nearest_to(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(y, size=ref.shape[-2:], mode="nearest")


class LUAFM(nn.Module):
    """Lightweight unified attention fusion: y (high level) nearest-up to x (low level), both
    brought to min(x_ch, y_ch) by a 3x3 CBR (x only when wider); a spatial attention `a` from
    the channel mean/max maps of both; out = a * x + (1 - a) * y."""

    def __init__(self, x_ch: int, y_ch: int, ksize: int = 3):
        super().__init__()
        self.min_ch = min(x_ch, y_ch)
        if x_ch > self.min_ch:
            self.conv_x = ConvBNReLU(x_ch, self.min_ch, ksize)
        self.conv_y = ConvBNReLU(y_ch, self.min_ch, ksize)
        self.conv_xy_atten = nn.Sequential(ConvBNReLU(4, 2), ConvBN(2, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv_x"):
            x = self.conv_x(x)
        y = self.conv_y(_nearest_to(y, x))
        atten = torch.sigmoid(self.conv_xy_atten(avg_max_reduce_channel(x, y)))
        return x * atten + y * (1 - atten)


class UMF(nn.Module):
    """Unified multi-feature fusion of border x, semantic y and spatial z (all `in_ch`): y
    nearest-up to x then a 3x3 CBR; three per-pixel weights from the six mean/max maps;
    out = w1 * x + w2 * y + w3 * z."""

    def __init__(self, in_ch: int, ksize: int = 3):
        super().__init__()
        self.conv_y = ConvBNReLU(in_ch, in_ch, ksize)
        self.conv_xy_atten = nn.Sequential(ConvBNReLU(6, 6), ConvBN(6, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = self.conv_y(_nearest_to(y, x))
        atten = torch.sigmoid(self.conv_xy_atten(avg_max_reduce_channel(x, y, z)))
        w1, w2, w3 = torch.split(atten, 1, dim=1)
        return x * w1 + y * w2 + z * w3


# --------------------------------------------------------------------------- heads


class BSSNetHead(SegmentHead):
    """The authors' `BaseBSSNet_Head` with the decode head's classifier: BN-ReLU-conv3x3,
    BN-ReLU, dropout, conv1x1 (with bias). Without dropout it is the shared `SegmentHead`."""

    def __init__(self, inplanes: int, interplanes: int, outplanes: int, dropout: float = 0.1):
        super().__init__(inplanes, interplanes, outplanes)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.dropout(self.relu(self.bn2(x))))


class FCNHead(nn.Module):
    """mmseg's `FCNHead` with one conv and no input concat: 3x3 CBR, dropout, conv1x1."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


# --------------------------------------------------------------------------- network


class BSSNet(TrainingHeadsMixin, nn.Module):
    """Boundary / semantic / spatial segmentation network. Input H and W must be multiples of
    8; logits at 1/8 (`upsample=False`, BSSNet-T) or at 1/4 (`upsample=True`, BSSNet-B).

    channels: base width C (32 for T, 64 for B); ppm_channels: PAPPM branch width;
    head_channels: width of the main head; aux_channels: width of the FCN aux heads
    (training only; the authors' configs use 2C).
    """

    TRAINING_HEADS = ("b_head", "d_head", "auxiliary_head")  # modules built only with aux_heads=True

    def __init__(
        self,
        num_classes: int = 19,
        channels: int = 32,
        ppm_channels: int = 96,
        head_channels: int = 128,
        aux_channels: int = 64,
        num_stem_blocks: int = 2,
        num_branch_blocks: int = 3,
        upsample: bool = False,
        aux_heads: bool = False,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        c = channels
        self.num_classes = num_classes
        self.output_stride = 4 if upsample else 8
        # stem to 1/8 (2C), then the semantic (I) branch: 1/16 (4C), 1/32 (8C), 1/64 (16C)
        self.stem = nn.Sequential(
            ConvModule(3, c, 3, 2),
            ConvModule(c, c, 3, 2),
            make_layer(BasicBlock, c, c, num_stem_blocks),
            nn.ReLU(inplace=True),
            make_layer(BasicBlock, c, 2 * c, num_stem_blocks, stride=2),
            nn.ReLU(inplace=True),
        )
        self.i_branch_layers = nn.ModuleList(
            [
                make_layer(BasicBlock, 2 * c, 4 * c, num_branch_blocks, stride=2),
                make_layer(BasicBlock, 4 * c, 8 * c, num_branch_blocks, stride=2),
                make_layer(Bottleneck, 8 * c, 8 * c, 2, stride=2),
            ]
        )
        self.spp = PAPPM(16 * c, ppm_channels, 8 * c)
        self.uafm4 = LUAFM(8 * c, 8 * c)
        self.uafm3 = LUAFM(4 * c, 8 * c)
        # border (B) and spatial / AutoEncoder (D) branches at 1/8
        self.b_branch_layers = nn.ModuleList([ConvModule(2 * c, 2 * c), ConvModule(2 * c, 4 * c)])
        self.compression_b = ConvModule(4 * c, 2 * c, 1)
        self.uafm_ib = LUAFM(2 * c, 2 * c)
        self.d_branch_layers = nn.ModuleList([ConvModule(2 * c, 2 * c), ConvModule(2 * c, 4 * c)])
        self.compression_d = ConvModule(4 * c, 2 * c, 1)
        self.uafm_id = LUAFM(2 * c, 2 * c)
        self.fuse_bdi = UMF(4 * c)
        if upsample:
            self.upconv = ConvModule(4 * c, 4 * c)
        self.fuse_b_d_head = BSSNetHead(4 * c, head_channels, num_classes)
        self.aux_heads = aux_heads
        if aux_heads:
            self.b_head = SegmentHead(2 * c, c, 1)
            self.d_head = SegmentHead(2 * c, 2 * c, 3)
            self.auxiliary_head = nn.ModuleList(
                [
                    FCNHead(4 * c, aux_channels, num_classes),
                    FCNHead(8 * c, aux_channels, num_classes),
                ]
            )
        init_kaiming_conv_norm(self)

    def forward(self, x: torch.Tensor):
        image = x
        x = self.stem(x)
        x_b = self.b_branch_layers[0](x)
        x_d = self.d_branch_layers[0](x)
        x_i_3 = F.relu(self.i_branch_layers[0](x))
        x_b = self.uafm_ib(x_b, self.compression_b(x_i_3))
        x_d = self.uafm_id(x_d, self.compression_d(x_i_3))
        tmp_xb, tmp_xd = x_b, x_d  # taps of the border and AutoEncoder heads
        x_b = self.b_branch_layers[1](x_b)
        x_d = self.d_branch_layers[1](x_d)
        x_i_4 = F.relu(self.i_branch_layers[1](x_i_3))
        x_i_5 = self.i_branch_layers[2](x_i_4)
        out = self.uafm4(x_i_4, self.spp(x_i_5))
        out = self.uafm3(x_i_3, out)
        out = self.fuse_bdi(x_b, out, x_d)
        if hasattr(self, "upconv"):
            out = self.upconv(out)
            # a constant x2 (exact: 2h x 2w for any h, w) keeps the exported graph's output
            # size static; a size computed from traced shapes leaves it symbolic in ONNX
            out = F.interpolate(out, scale_factor=2.0, mode="nearest")
        main = self.fuse_b_d_head(out)
        if not self.aux_heads:
            return main
        return BSSNetOutputs(
            main,
            self.b_head(tmp_xb),
            self.d_head(tmp_xd),
            self.auxiliary_head[0](x_i_3),
            self.auxiliary_head[1](x_i_4),
            image,
        )


# --------------------------------------------------------------------------- variants

_VARIANTS = {
    "bssnet_t": dict(channels=32, ppm_channels=96, head_channels=128, aux_channels=64),
    "bssnet_b": dict(channels=64, ppm_channels=96, head_channels=128, aux_channels=128, upsample=True),
}


def _create_bssnet(variant: str, num_classes: int = 19, aux_heads: bool = False, **kwargs) -> BSSNet:
    return BSSNet(num_classes=num_classes, aux_heads=aux_heads, **{**_VARIANTS[variant], **kwargs})


def bssnet_t(**kwargs) -> BSSNet:
    return _create_bssnet("bssnet_t", **kwargs)


def bssnet_b(**kwargs) -> BSSNet:
    return _create_bssnet("bssnet_b", **kwargs)
