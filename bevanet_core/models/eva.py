"""BEVANet's efficient visual attention: the cascaded kernel selection (CKS), the decomposed
large-kernel attentions (SDLSKA, LSKA), the spatial attention and the EVA block built from them,
with the authors' tensor names (models/bevanet.py assembles the network from these blocks).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (
    DWConv,
    PWConv,
    init_fan_out_normal,
)

# kernel size -> (first depthwise kernel, dilated kernel, dilation) of the decomposed kernels
_SDLSKA_KERNELS = {7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3)}


# --------------------------------------------------------------------------- attention


class CKS(nn.Module):
    """Comprehensive kernel selection: channel and spatial weights for three kernel branches."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = max(dim // 16, 32)

        def branch(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(PWConv(cin, cout), DWConv(cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.fc_reduce = branch(dim, hidden)
        self.fc_expand_small = branch(hidden, dim)
        self.fc_expand_big_h = branch(hidden, dim)
        self.fc_expand_big_v = branch(hidden, dim)
        self.conv_squeeze = nn.Conv2d(2, 3, 7, padding=3)

    def forward(self, small: torch.Tensor, big_h: torch.Tensor, big_v: torch.Tensor) -> torch.Tensor:
        u = small + big_h + big_v
        z = self.fc_reduce(F.adaptive_avg_pool2d(u, 1))
        ch_small = torch.sigmoid(self.fc_expand_small(z))
        ch_h = torch.sigmoid(self.fc_expand_big_h(z))
        ch_v = torch.sigmoid(self.fc_expand_big_v(z))
        pooled = torch.cat([u.mean(dim=1, keepdim=True), u.amax(dim=1, keepdim=True)], dim=1)
        sp_small, sp_h, sp_v = torch.sigmoid(self.conv_squeeze(pooled)).chunk(3, dim=1)
        return small * ch_small * sp_small + big_h * ch_h * sp_h + big_v * ch_v * sp_v


class SDLSKA(nn.Module):
    """Simple-decomposed large separable kernel attention with kernel selection."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        if kernel_size not in _SDLSKA_KERNELS:
            raise ValueError(f"SDLSKA kernel_size must be one of {sorted(_SDLSKA_KERNELS)}, got {kernel_size}")
        k0, kd, d = _SDLSKA_KERNELS[kernel_size]
        pad = (kd // 2) * d
        self.DW_conv = DWConv(dim, k0, k0 // 2)
        self.DW_D_conv_h = DWConv(dim, (1, kd), (0, pad), (1, d))
        self.DW_D_conv_v = DWConv(dim, (kd, 1), (pad, 0), (d, 1))
        self.pwconv = PWConv(dim)
        self.FS_kernel = CKS(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a0 = self.DW_conv(x)
        attn = self.FS_kernel(a0, self.DW_D_conv_h(a0), self.DW_D_conv_v(a0))
        return x * self.pwconv(attn)


class LSKA(nn.Module):
    """Large separable kernel attention (k=35: 1x5, 5x1, then 1x11 and 11x1 dilated by 3)."""

    def __init__(self, dim: int, kernel_size: int = 35):
        super().__init__()
        if kernel_size != 35:
            raise ValueError(f"LSKA is only used with kernel_size 35, got {kernel_size}")
        self.DW_conv_h = DWConv(dim, (1, 5), (0, 2))
        self.DW_conv_v = DWConv(dim, (5, 1), (2, 0))
        self.DW_D_conv_h = DWConv(dim, (1, 11), (0, 15), (1, 3))
        self.DW_D_conv_v = DWConv(dim, (11, 1), (15, 0), (3, 1))
        self.pwconv = PWConv(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.DW_D_conv_v(self.DW_D_conv_h(self.DW_conv_v(self.DW_conv_h(x))))
        return x * self.pwconv(attn)


class SpatialAttention(nn.Module):
    """PW -> GELU -> kernel attention -> PW, plus a residual from the input."""

    def __init__(self, dim: int, gating_unit: nn.Module):
        super().__init__()
        self.proj_1 = PWConv(dim)
        self.activation = nn.GELU()
        self.spatial_gating_unit = gating_unit
        self.proj_2 = PWConv(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = PWConv(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = PWConv(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class EVABlock(nn.Module):
    """Efficient visual attention block: two layer-scaled residual branches (attention, MLP)."""

    def __init__(self, dim: int, kernel_size: int, mlp_ratio: int = 4, layer_scale: float = 1e-2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim, SDLSKA(dim, kernel_size))
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = MLP(dim, dim * mlp_ratio)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale))
        self.apply(init_fan_out_normal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1[:, None, None] * self.attn(self.norm1(x))
        return x + self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))
