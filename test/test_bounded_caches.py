"""Caches keyed by input are bounded: a stream of ever new frame sizes through a letterboxing
segmenter keeps at most MAX_CACHED_SIZES resize plans and sampling grids, so memory stays flat."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bevanet_core.checkpoint import ModelInfo
from bevanet_core.imaging.lru import MAX_CACHED_SIZES, LRUCache
from bevanet_core.runtime import Segmenter


class Cells(nn.Module):
    """Two classes at 1/8 of the input: cheap, so the test measures the caches, not a network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = F.avg_pool2d(x.abs().sum(1, keepdim=True), 8)
        return torch.cat([energy, -energy], dim=1)


def test_lru_keeps_the_most_recently_used():
    cache: LRUCache[int] = LRUCache(maxsize=3)
    made = []
    for key in (1, 2, 3, 1, 4):  # 1 is used again before 4 arrives: 2 is the oldest then
        cache.get_or_make(key, lambda key=key: made.append(key) or key * 10)
    assert list(cache) == [3, 1, 4] and made == [1, 2, 3, 4]
    assert cache.get_or_make(1, lambda: pytest.fail("made twice")) == 10
    with pytest.raises(ValueError, match="maxsize=0"):
        LRUCache(maxsize=0)


def _cached_bytes(seg: Segmenter) -> int:
    total = 0
    for cache in (seg._post._grids, seg._post._indices, seg._post._positions):
        for value in cache.values():
            for t in value if isinstance(value, tuple) else (value,):
                total += t.numel() * t.element_size()
    return total


@pytest.mark.parametrize("upsample", ["logits", "labels"])
def test_many_frame_sizes_keep_the_caches_bounded(upsample):
    seg = Segmenter.from_model(
        Cells(),
        ModelInfo.default("bevanet_s", 2),
        input_size=(64, 48),
        resize="letterbox",
        upsample=upsample,
        fold_bn=False,
    )
    sizes = [(40 + 3 * i, 30 + 2 * i) for i in range(3 * MAX_CACHED_SIZES)]
    peak = 0
    for w, h in sizes:
        result = seg.segment(np.full((h, w, 3), 128, np.uint8), "rgb8")
        assert result.mask.shape == (h, w)
        caches = (seg._plans, seg._post._grids, seg._post._indices, seg._post._positions)
        assert all(len(c) <= MAX_CACHED_SIZES for c in caches), [len(c) for c in caches]
        peak = max(peak, _cached_bytes(seg))
    assert peak > 0 and len(seg._plans) == MAX_CACHED_SIZES  # every size was planned; the oldest were dropped
    assert (sizes[0][0], sizes[0][1]) not in seg._plans and sizes[-1] in seg._plans
    # the bytes held are those of the last MAX_CACHED_SIZES sizes at most, not of all of them
    w, h = sizes[-1]
    assert peak <= MAX_CACHED_SIZES * (2 * w * h * 4 * 2 + 64 * 1024)
