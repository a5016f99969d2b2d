"""STDC-Seg: short-term dense concatenate networks for segmentation (Fan et al., CVPR 2021).

An STDC backbone (stages of "cat" modules whose four blocks halve their width and are
concatenated) with BiSeNet's context path (attention refinement at 1/16 and 1/32, a global
context vector) and a feature fusion module at 1/8. Read top to bottom: building blocks,
backbone, context path and fusion, the network, then the registered variants.

Tensor names follow MichaelFan01/STDC-Seg (`cp.backbone.features.*`, `cp.arm16`, `ffm`,
`conv_out`, ...). The authors' files additionally hold aliases of the backbone stages
(`cp.backbone.x2` ... `x32`) and the unused ImageNet classifier (`conv_last`, `fc`, `bn`,
`linear`), and the unused detail heads `conv_out_sp2/4/16`; those are not modules here.
Contract departures: logits stay at 1/8 (the runtime upsamples; the authors' Seg50/Seg75
evaluation-time resize is a choice of input size, not part of the network), and
`aux_heads=True` returns `STDCOutputs(main, aux16, aux32, detail)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import TrainingHeadsMixin


class STDCOutputs(NamedTuple):
    """Training outputs: main logits (1/8), context-path logits on cp8 (1/8) and cp16 (1/16),
    and the 1-channel detail logits on the 1/8 backbone feature."""

    main: torch.Tensor
    aux16: torch.Tensor
    aux32: torch.Tensor
    detail: torch.Tensor


class ConvX(nn.Module):
    """conv (no bias, padding k//2) + BN + ReLU; also the authors' `ConvBNReLU`."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class CatBottleneck(nn.Module):
    """STDC module ("cat", 4 blocks): widths C/2, C/4, C/8, C/8 concatenated to C.

    With stride 2, a depthwise 3x3 s2 + BN follows the first block and the first block's own
    output is average-pooled before the concatenation.
    """

    def __init__(self, cin: int, cout: int, block_num: int = 4, stride: int = 1):
        super().__init__()
        if block_num != 4:
            raise ValueError(f"only the 4-block STDC module is used, got block_num={block_num}")
        self.stride = stride
        if stride == 2:
            self.avd_layer = nn.Sequential(
                nn.Conv2d(cout // 2, cout // 2, 3, 2, 1, groups=cout // 2, bias=False),
                nn.BatchNorm2d(cout // 2),
            )
            self.skip = nn.AvgPool2d(3, 2, 1)
        self.conv_list = nn.ModuleList(
            [
                ConvX(cin, cout // 2, 1),
                ConvX(cout // 2, cout // 4),
                ConvX(cout // 4, cout // 8),
                ConvX(cout // 8, cout // 8),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv_list[0](x)
        out = self.avd_layer(out1) if self.stride == 2 else out1
        outs = []
        for conv in self.conv_list[1:]:
            out = conv(out)
            outs.append(out)
        if self.stride == 2:
            out1 = self.skip(out1)
        return torch.cat([out1, *outs], dim=1)


class STDCNet(nn.Module):
    """Backbone: stem ConvX 3->32 s2, 32->64 s2; stages 256 (1/8), 512 (1/16), 1024 (1/32)."""

    def __init__(self, layers: Sequence[int] = (2, 2, 2), base: int = 64):
        super().__init__()
        features = [ConvX(3, base // 2, 3, 2), ConvX(base // 2, base, 3, 2)]
        cin = base
        for i, blocks in enumerate(layers):
            cout = base * 4 * 2**i
            for j in range(blocks):
                features.append(CatBottleneck(cin if j == 0 else cout, cout, 4, 2 if j == 0 else 1))
            cin = cout
        self.features = nn.Sequential(*features)
        ends = [2 + sum(layers[: i + 1]) for i in range(len(layers))]
        self.stage_ends = (2, *ends)  # feature indices after which 1/4, 1/8, 1/16, 1/32 are taken

    def forward(self, x: torch.Tensor):
        """(feat4, feat8, feat16, feat32)."""
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i + 1 in self.stage_ends:
                outs.append(x)
        return tuple(outs)


# --------------------------------------------------------------------------- context path, fusion


def _gap(x: torch.Tensor) -> torch.Tensor:
    return torch.mean(x, dim=(2, 3), keepdim=True)


def _nearest_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


class AttentionRefinementModule(nn.Module):
    """3x3 CBR to 128, then channel attention: GAP, 1x1 (no bias), BN, sigmoid, multiply."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvX(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_gap(feat))))


class ContextPath(nn.Module):
    """Backbone plus top-down context: cp16 (128 @1/16) and cp8 (128 @1/8)."""

    def __init__(self, layers: Sequence[int]):
        super().__init__()
        self.backbone = STDCNet(layers)
        self.arm16 = AttentionRefinementModule(512, 128)
        self.arm32 = AttentionRefinementModule(1024, 128)
        self.conv_head32 = ConvX(128, 128)
        self.conv_head16 = ConvX(128, 128)
        self.conv_avg = ConvX(1024, 128, 1)

    def forward(self, x: torch.Tensor):
        """(feat8, cp8, cp16)."""
        _, feat8, feat16, feat32 = self.backbone(x)
        avg = self.conv_avg(_gap(feat32))  # broadcast over 1/32, as the reference's nearest-up
        cp16 = self.conv_head32(_nearest_to(self.arm32(feat32) + avg, feat16))
        cp8 = self.conv_head16(_nearest_to(self.arm16(feat16) + cp16, feat8))
        return feat8, cp8, cp16


class FeatureFusionModule(nn.Module):
    """concat -> 1x1 CBR; squeeze-excite style attention (1/4 width); out = f * a + f."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvX(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(self.relu(self.conv1(_gap(feat)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    """3x3 CBR then a 1x1 classifier without bias (logits at the feature's resolution)."""

    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__()
        self.conv = ConvX(cin, mid)
        self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


# --------------------------------------------------------------------------- network


class STDCSeg(TrainingHeadsMixin, nn.Module):
    """Semantic segmentation network. Input H and W must be multiples of 8; logits at 1/8."""

    TRAINING_HEADS = ("conv_out16", "conv_out32", "conv_out_sp8")  # modules built only with aux_heads=True

    output_stride = 8  # logits come out at 1/8 of the input (read by the export metadata)

    def __init__(self, num_classes: int = 19, layers: Sequence[int] = (2, 2, 2), aux_heads: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.cp = ContextPath(layers)
        self.ffm = FeatureFusionModule(256 + 128, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_classes)
        self.aux_heads = aux_heads
        if aux_heads:
            self.conv_out16 = BiSeNetOutput(128, 64, num_classes)
            self.conv_out32 = BiSeNetOutput(128, 64, num_classes)
            self.conv_out_sp8 = BiSeNetOutput(256, 64, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor):
        feat8, cp8, cp16 = self.cp(x)
        main = self.conv_out(self.ffm(feat8, cp8))
        if not self.aux_heads:
            return main
        return STDCOutputs(main, self.conv_out16(cp8), self.conv_out32(cp16), self.conv_out_sp8(feat8))

    # tensors of the authors' files that are not modules here: the ImageNet classifier and the
    # detail heads at strides 2, 4 and 16 (built but unused in their Cityscapes models)
    UNUSED_AUTHOR_TENSORS = tuple(f"cp.backbone.{n}." for n in ("conv_last", "fc", "bn", "linear")) + (
        "conv_out_sp2.",
        "conv_out_sp4.",
        "conv_out_sp16.",
    )

    def adapt_foreign_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The authors' state dict -> ours: drops their unused tensors and the stage aliases
        `cp.backbone.x2/x4/x8/x16/x32.*` (views of `features`), after checking each alias equals
        the feature tensor it stands for. Raises ValueError naming the first one that does not."""
        starts = dict(zip((2, 4, 8, 16, 32), (0, 1, *self.cp.backbone.stage_ends[:3]), strict=True))
        kept = {}
        for key, value in state.items():
            if key.startswith(self.UNUSED_AUTHOR_TENSORS):
                continue
            parts = key.split(".")
            if len(parts) > 3 and parts[:2] == ["cp", "backbone"] and parts[2][0] == "x" and parts[2][1:].isdigit():
                target = ".".join(["cp.backbone.features", str(starts[int(parts[2][1:])] + int(parts[3])), *parts[4:]])
                if target not in state or not torch.equal(state[target], value):
                    raise ValueError(f"stage alias {key} does not equal {target}")
                continue
            kept[key] = value
        return kept


# --------------------------------------------------------------------------- variants

_VARIANTS = {
    "stdc1": dict(layers=(2, 2, 2)),
    "stdc2": dict(layers=(4, 5, 3)),
}


def _create_stdc(variant: str, num_classes: int = 19, aux_heads: bool = False, **kwargs) -> STDCSeg:
    return STDCSeg(num_classes=num_classes, aux_heads=aux_heads, **{**_VARIANTS[variant], **kwargs})


def stdc1(**kwargs) -> STDCSeg:
    return _create_stdc("stdc1", **kwargs)


def stdc2(**kwargs) -> STDCSeg:
    return _create_stdc("stdc2", **kwargs)
