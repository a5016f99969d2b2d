"""VAN backbones with the Light-Ham decode head (Guo et al., 2022; Geng et al., ICLR 2021).

VAN (Visual Attention Network): four stages of overlapping patch embedding (conv + BN) and
blocks whose token mixer is Large Kernel Attention (LKA: depthwise 5x5, depthwise 7x7
dilation 3, 1x1, multiply the input), each stage closed by a LayerNorm over channels. Light-Ham:
stages 2-4 resized to 1/8 and concatenated, squeezed by a 1x1 conv, passed through a Hamburger
(1x1, NMF matrix decomposition, 1x1) and classified at 1/8. Read top to bottom: VAN blocks and
backbone, the network, then the registered variants; the NMF, the Hamburger and the head are in
hamburger.py.

Tensor names follow the authors' code: the backbone as VAN-Classification `models/van.py`
(`patch_embed1.proj`, `block1.0.attn.spatial_gating_unit.conv0`, `norm1`, ...) under
`backbone.`, the head as mmseg's `LightHamHead` (Gsunshine/Enjoy-Hamburger `seg_light_ham`)
under `decode_head.` with mmcv's ConvModule names (`squeeze.conv`, `squeeze.gn`,
`hamburger.ham_in.conv`, `hamburger.ham_out.gn`, `align.conv`, `conv_seg`). The authors'
segmentation checkpoints thus map one to one, except `decode_head.hamburger.ham.bases` (below),
which their files do not hold; ImageNet VAN checkpoints load into `backbone` (minus `head.*`).

NMF and deployment. The authors draw new random bases (uniform, L2-normalised over channels)
at every forward, in evaluation too, so their inference is not deterministic, and they
back-propagate through all the multiplicative-update steps (the `@torch.no_grad()` of the
original HamNet is commented out in the Light-Ham code). Training here does the same. In eval
mode this model instead starts from a fixed seeded basis, the buffer `bases` (saved with the
weights), and runs the 7 steps as plain matmul / softmax / elementwise ops, which the ONNX
exporter unrolls (opset 17); `random_eval_bases=True` restores the authors' random evaluation.
`test/test_van.py` measures how much the fixed basis changes the predicted classes.

Contract departures: logits stay at 1/8 of the input (the authors' "up x8" is mmseg's resize
of the head's 1/8 output to the image; the runtime does that here), and `aux_heads=True`
returns `LightHamOutputs(main)`: the authors' configs have no auxiliary head, so there are no
training-only heads and the objective is plain cross-entropy (`training/lightham_loss.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn

from .hamburger import LightHamHead
from .layers import DWConv, TrainingHeadsMixin, channel_layer_norm, init_kaiming_conv_norm


class LightHamOutputs(NamedTuple):
    """Training outputs: the main logits at 1/8 (the authors train with no auxiliary head)."""

    main: torch.Tensor


# --------------------------------------------------------------------------- VAN backbone


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with p = 0)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """1x1 C->rC, depthwise 3x3, GELU, 1x1 rC->C (all with bias)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class AttentionModule(nn.Module):
    """Large Kernel Attention: DW5x5 -> DW7x7 dilation 3 -> 1x1, then multiply the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class SpatialAttention(nn.Module):
    """1x1, GELU, LKA, 1x1, plus the inner shortcut."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = AttentionModule(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class Block(nn.Module):
    """x += ls1 * Attn(BN(x)); x += ls2 * MLP(BN(x)), layer scales initialised to 1e-2."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float = 0.0, layer_scale_init: float = 1e-2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))


class OverlapPatchEmbed(nn.Module):
    """conv k x k (padding k//2, with bias) at `stride`, then BN."""

    def __init__(self, cin: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel, stride, kernel // 2)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class VAN(nn.Module):
    """Backbone: features at 1/4, 1/8, 1/16, 1/32 with `embed_dims` channels.

    Stage i: `patch_embed{i}` (7x7 s4 for the first, 3x3 s2 after), `depths[i]` blocks in
    `block{i}`, LayerNorm (eps 1e-6) `norm{i}`. Drop-path rates rise linearly from 0 to
    `drop_path_rate` over all blocks.
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] = (3, 3, 5, 2),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        drop_path_rate: float = 0.1,
        in_chans: int = 3,
    ):
        super().__init__()
        if not len(embed_dims) == len(depths) == len(mlp_ratios) == 4:
            raise ValueError(f"VAN has 4 stages: embed_dims={embed_dims}, depths={depths}, mlp_ratios={mlp_ratios}")
        self.embed_dims = tuple(embed_dims)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        cin, cur = in_chans, 0
        for i, (dim, depth, ratio) in enumerate(zip(embed_dims, depths, mlp_ratios, strict=True)):
            embed = OverlapPatchEmbed(cin, dim, 7 if i == 0 else 3, 4 if i == 0 else 2)
            blocks = nn.ModuleList(Block(dim, ratio, rates[cur + j]) for j in range(depth))
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=1e-6))
            cin, cur = dim, cur + depth
        self.apply(_init_van)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[feat4, feat8, feat16, feat32]."""
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                x = block(x)
            x = channel_layer_norm(getattr(self, f"norm{i}"), x)
            outs.append(x)
        return outs


def _init_van(m: nn.Module) -> None:
    """The authors' init: conv ~ N(0, sqrt(2 / fan_out)), bias 0; LayerNorm 1, 0."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- network


class VANLightHam(TrainingHeadsMixin, nn.Module):
    """Semantic segmentation network. Input H and W must be multiples of 8; logits at 1/8."""

    output_stride = 8

    def __init__(
        self,
        num_classes: int = 19,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] = (3, 3, 5, 2),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        channels: int = 512,
        ham_channels: int = 512,
        rank: int = 64,
        drop_path_rate: float = 0.1,
        dropout: float = 0.1,
        aux_heads: bool = False,
        **nmf_kwargs,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = VAN(embed_dims, depths, mlp_ratios, drop_path_rate)
        self.decode_head = LightHamHead(
            embed_dims[1:], num_classes, channels, ham_channels, rank, dropout, **nmf_kwargs
        )
        init_kaiming_conv_norm(self.decode_head, norm_types=(nn.GroupNorm,))  # mmcv ConvModule
        nn.init.normal_(self.decode_head.conv_seg.weight, 0.0, 0.01)  # mmseg's cls_seg init
        self.aux_heads = aux_heads

    def forward(self, x: torch.Tensor):
        main = self.decode_head(self.backbone(x)[1:])
        return LightHamOutputs(main) if self.aux_heads else main


# --------------------------------------------------------------------------- variants

_BACKBONES = {
    "tiny": dict(embed_dims=(32, 64, 160, 256), depths=(3, 3, 5, 2)),
    "small": dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 4, 2)),
    "base": dict(embed_dims=(64, 128, 320, 512), depths=(3, 3, 12, 3)),
    "large": dict(embed_dims=(64, 128, 320, 512), depths=(3, 5, 27, 3)),
}
# the authors' configs: channels 512 throughout; ham_channels = the concatenated width for Tiny
# (64 + 160 + 256 = 480), 512 otherwise (the base config's default); D256: 256, 256, R 16;
# drop path 0.1, 0.25 for Large
_VARIANTS = {
    "van_tiny_lightham": dict(**_BACKBONES["tiny"], ham_channels=480),
    "van_small_lightham": dict(**_BACKBONES["small"]),
    "van_base_lightham": dict(**_BACKBONES["base"]),
    "van_large_lightham": dict(**_BACKBONES["large"], drop_path_rate=0.25),
    "van_tiny_lightham_d256": dict(**_BACKBONES["tiny"], channels=256, ham_channels=256, rank=16),
}


def _create_van_lightham(variant: str, num_classes: int = 19, aux_heads: bool = False, **kwargs) -> VANLightHam:
    return VANLightHam(num_classes=num_classes, aux_heads=aux_heads, **{**_VARIANTS[variant], **kwargs})


def van_tiny_lightham(**kwargs) -> VANLightHam:
    return _create_van_lightham("van_tiny_lightham", **kwargs)


def van_small_lightham(**kwargs) -> VANLightHam:
    return _create_van_lightham("van_small_lightham", **kwargs)


def van_base_lightham(**kwargs) -> VANLightHam:
    return _create_van_lightham("van_base_lightham", **kwargs)


def van_large_lightham(**kwargs) -> VANLightHam:
    return _create_van_lightham("van_large_lightham", **kwargs)


def van_tiny_lightham_d256(**kwargs) -> VANLightHam:
    return _create_van_lightham("van_tiny_lightham_d256", **kwargs)
