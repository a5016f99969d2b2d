"""The Light-Ham decode head of VAN + Light-Ham: matrix decomposition by non-negative matrix
factorisation (NMF2D) inside the Hamburger, and the head that concatenates stages 2-4 and
applies it, with the authors' tensor names (models/van.py assembles the network).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import resize_to

# --------------------------------------------------------------------------- NMF, Hamburger


def random_bases(batch: int, channels: int, rank: int, generator=None, device=None, dtype=None) -> torch.Tensor:
    """(batch, channels, rank) uniform [0, 1) bases, L2-normalised over the channels."""
    bases = torch.rand(batch, channels, rank, generator=generator, device=device, dtype=dtype)
    return F.normalize(bases, dim=1)


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of a (C, H*W) feature map with rank R.

    x (non-negative, C x N) ~ bases (C x R) @ coef^T (N x R): coef starts as
    softmax(x^T bases) (inv_t = 1), then `train_steps` (training) or `eval_steps` (eval)
    multiplicative updates of coef and bases, one final coef update, and the reconstruction.
    Bases: random each forward in training (as the authors); the fixed buffer `bases` in eval
    unless `random_eval_bases` (the authors' eval). Only MD_S = 1 (every published config).
    """

    def __init__(
        self,
        channels: int,
        rank: int = 64,
        train_steps: int = 6,
        eval_steps: int = 7,
        inv_t: float = 1.0,
        eps: float = 1e-6,
        seed: int = 0,
        random_eval_bases: bool = False,
    ):
        super().__init__()
        if not 0 < rank <= channels:
            raise ValueError(f"NMF rank must be in 1..{channels} (channels), got {rank}")
        self.channels, self.rank = channels, rank
        self.train_steps, self.eval_steps = train_steps, eval_steps
        self.inv_t, self.eps = inv_t, eps
        self.random_eval_bases = random_eval_bases
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("bases", random_bases(1, channels, rank, g, device="cpu"))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the authors' checkpoints hold no basis (theirs is drawn at every forward): keep the
        # seeded one, so that their files load strictly
        state_dict.setdefault(prefix + "bases", self.bases)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _update_coef(self, x, bases, coef):
        numerator = torch.matmul(x.transpose(1, 2), bases)  # (B, N, R)
        denominator = torch.matmul(coef, torch.matmul(bases.transpose(1, 2), bases))
        return coef * numerator / (denominator + self.eps)

    def _update_bases(self, x, bases, coef):
        numerator = torch.matmul(x, coef)  # (B, C, R)
        denominator = torch.matmul(bases, torch.matmul(coef.transpose(1, 2), coef))
        return bases * numerator / (denominator + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # always in float32: the multiplicative updates divide sums of products by each other,
        # which bf16's 8-bit mantissa would make coarse
        for device_type in ("cpu", "cuda"):  # no branch on x itself: torch.fx traces this
            if torch.is_autocast_enabled(device_type):
                with torch.autocast(device_type, enabled=False):
                    return self._decompose(x.float()).to(x.dtype)
        return self._decompose(x)

    def _decompose(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N)
        if self.training or self.random_eval_bases:
            bases = random_bases(x.shape[0], self.channels, self.rank, device=x.device, dtype=x.dtype)
        else:
            bases = self.bases  # (1, C, R): broadcasts over the batch in the first step
        coef = F.softmax(self.inv_t * torch.matmul(flat.transpose(1, 2), bases), dim=-1)
        for _ in range(self.train_steps if self.training else self.eval_steps):
            coef = self._update_coef(flat, bases, coef)
            bases = self._update_bases(flat, bases, coef)
        coef = self._update_coef(flat, bases, coef)
        return torch.matmul(bases, coef.transpose(1, 2)).view_as(x)

    def matmul_macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of the eval forward's matmuls for an input of `input_shape`
        (B, C, H, W). `complexity.count_macs` sees convolutions and linear layers only."""
        batch, n = input_shape[0], input_shape[2] * input_shape[3]
        c, r = self.channels, self.rank
        coef_step = n * c * r + c * r * r + n * r * r
        bases_step = c * n * r + n * r * r + c * r * r
        total = n * c * r + self.eval_steps * (coef_step + bases_step) + coef_step + c * r * n
        # the shared basis's first Gram matrix (C R R) is computed once for the whole batch
        return batch * total - (batch - 1) * c * r * r


class ConvModule(nn.Module):
    """mmcv's ConvModule as the head uses it: conv 1x1, optional GroupNorm(32), optional ReLU.
    The conv has a bias only without a norm (mmcv's bias='auto')."""

    def __init__(self, cin: int, cout: int, norm: bool = True, act: bool = True, num_groups: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=not norm)
        self.gn = nn.GroupNorm(num_groups, cout) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class Hamburger(nn.Module):
    """ham_in 1x1 (bias) + ReLU, NMF2D, ham_out 1x1 + GN; out = ReLU(x + ham)."""

    def __init__(self, channels: int, rank: int, **nmf_kwargs):
        super().__init__()
        self.ham_in = ConvModule(channels, channels, norm=False, act=False)
        self.ham = NMF2D(channels, rank, **nmf_kwargs)
        self.ham_out = ConvModule(channels, channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enjoy = self.ham_out(self.ham(F.relu(self.ham_in(x))))
        return F.relu(x + enjoy)


class LightHamHead(nn.Module):
    """Stages 2-4 resized (bilinear) to the 1/8 one and concatenated; squeeze 1x1 + GN + ReLU
    to `ham_channels`; Hamburger; align 1x1 + GN + ReLU to `channels`; dropout; 1x1 classes."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        ham_channels: int = 512,
        rank: int = 64,
        dropout: float = 0.1,
        **nmf_kwargs,
    ):
        super().__init__()
        self.squeeze = ConvModule(sum(in_channels), ham_channels)
        self.hamburger = Hamburger(ham_channels, rank, **nmf_kwargs)
        self.align = ConvModule(ham_channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        first = feats[0]
        x = torch.cat([first] + [resize_to(f, first) for f in feats[1:]], dim=1)
        x = self.align(self.hamburger(self.squeeze(x)))
        return self.conv_seg(self.dropout(x))
