"""One process or many under `torchrun`: the rank, process-group set-up, values all ranks agree
on, and the batch sampler whose order is a pure function of (seed, epoch), so that a resumed run
sees the same batches as an uninterrupted one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Initialises torch.distributed from torchrun's environment variables, if present."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class ResumableBatchSampler(Sampler):
    """Batches of (index, augmentation seed) for one epoch, shuffled by (seed, epoch), split
    across ranks, skipping the first `start_batch` batches when resuming mid-epoch."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        shuffle: bool = True,
    ):
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.rank, self.world_size, self.start_batch, self.shuffle = rank, world_size, start_batch, shuffle

    @staticmethod
    def batches_per_epoch(size: int, batch_size: int, world_size: int = 1) -> int:
        return size // (batch_size * world_size)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[list[tuple]]:
        order = self._order()
        n = self.batches_per_epoch(self.size, self.batch_size, self.world_size)
        per_rank = order[self.rank : n * self.batch_size * self.world_size : self.world_size]
        for b in range(self.start_batch, n):
            yield [(i, (self.seed, self.epoch, i)) for i in per_rank[b * self.batch_size : (b + 1) * self.batch_size]]

    def __len__(self) -> int:
        return self.batches_per_epoch(self.size, self.batch_size, self.world_size) - self.start_batch


# --------------------------------------------------------------------------- builders


def agreed_max(value: float, device: torch.device) -> float:
    """The largest of `value` over all ranks (the value itself in one process)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
