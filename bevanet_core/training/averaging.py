"""The average of the weights a run keeps and ships (`run.ema_decay`)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class WeightEMA:
    """Exponential moving average of a model's parameters and buffers (Polyak averaging).

    The average starts as a copy of the model; its decay ramps up as min(decay, (1 + n) / (10 + n))
    over the first updates, so that a run from scratch is not averaged with its random start.
    Integer buffers (BatchNorm's batch counter) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"run.ema_decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, updates
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floats, sources = [], []
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.is_floating_point():
                floats.append(avg)
                sources.append(cur.detach())
            else:
                avg.copy_(cur)
        torch._foreach_lerp_(floats, sources, 1.0 - d)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
