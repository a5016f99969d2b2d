"""Sharding bag evaluation across processes (torchrun) and merging the results.

`torchrun --nproc-per-node N bevanet-bag-eval BAG...` starts N ranks; rank r evaluates
bags[r::N], the confusion matrices are summed with an all_reduce (gloo, so it works on CPU-only
machines too) and rank 0 writes the report over every bag.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..evaluation.metrics import ConfusionMatrix

T = TypeVar("T")


@dataclass
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env(backend: str = "gloo") -> DistContext:
    """RANK/WORLD_SIZE as torchrun sets them; joins the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    if world == 1:
        return DistContext()
    import torch.distributed as dist

    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), False)
    dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), True)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items this rank handles: every world_size-th, starting at rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return list(items[rank::world_size])


class _Counts:
    """Duck-typed stand-in accepted by ConfusionMatrix.merge."""

    def __init__(self, matrix: np.ndarray, missed: np.ndarray):
        self.num_classes = matrix.shape[0]
        self.matrix = matrix
        self.missed = missed


def merge_confusions(local: Sequence[ConfusionMatrix | None], num_classes: int) -> ConfusionMatrix | None:
    """Sum of this process's matrices (None when no bag had labels)."""
    present = [cm for cm in local if cm is not None]
    if not present:
        return None
    total = ConfusionMatrix(num_classes, ignore_index=255)
    for cm in present:
        total.merge(cm)
    return total


def all_reduce_confusion(local: ConfusionMatrix | None, num_classes: int, ctx: DistContext) -> ConfusionMatrix | None:
    """Sum confusion matrices over all ranks (gloo all_reduce); None if no rank had labels."""
    if ctx.world_size == 1:
        return local
    import torch
    import torch.distributed as dist

    matrix = local.matrix if local is not None else np.zeros((num_classes, num_classes), np.int64)
    missed = local.missed if local is not None else np.zeros(num_classes, np.int64)
    flat = torch.from_numpy(np.concatenate([matrix.reshape(-1), missed, [int(local is not None)]]).astype(np.int64))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.numpy()
    if flat[-1] == 0:
        return None
    n2 = num_classes * num_classes
    total = ConfusionMatrix(num_classes, ignore_index=255)
    total.merge(_Counts(flat[:n2].reshape(num_classes, num_classes).copy(), flat[n2 : n2 + num_classes].copy()))
    return total


def gather_objects(local: list, ctx: DistContext) -> list:
    """Concatenation of every rank's list, in rank order (the same on every rank)."""
    if ctx.world_size == 1:
        return list(local)
    import torch.distributed as dist

    parts: list[list | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, list(local))
    return [item for part in parts for item in (part or [])]


def finish(ctx: DistContext) -> None:
    """Leave the process group if this module joined it."""
    if ctx.initialized_here:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def unshard(gathered: Sequence[T], world_size: int) -> list[T]:
    """Per-item results gathered in rank order, put back in the order of the original list."""
    n = len(gathered)
    positions = [i for r in range(world_size) for i in range(r, n, world_size)]
    out: list[T | None] = [None] * n
    for item, pos in zip(gathered, positions, strict=True):
        out[pos] = item
    return out  # type: ignore[return-value]
