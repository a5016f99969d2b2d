"""Published parameter and MAC counts of the registered comparison networks, from
`../shared/specs/baselines.md` (measured there by building the authors' models on CPU) and, for
VAN-Small/Base/Large + Light-Ham, the VAN authors' README. The tests and
`benchmarks/model_facts.py --baselines` check the models here against them (within 1%)."""

from __future__ import annotations

from typing import NamedTuple, Optional


class PublishedCounts(NamedTuple):
    params_m: float  # inference parameters, millions
    gmacs: Optional[float]  # multiply-accumulates (the papers' "FLOPs"), None where not published
    size_hw: tuple[int, int]  # input (H, W) of the MAC count
    num_classes: int  # class count of the published head (Light-Ham: 150-class ADE20K)


BASELINE_COUNTS = {
    "pidnet_s": PublishedCounts(7.63, 47.5, (1024, 2048), 19),
    "pidnet_m": PublishedCounts(28.54, 178.0, (1024, 2048), 19),
    "pidnet_l": PublishedCounts(36.94, 275.7, (1024, 2048), 19),
    "bisenetv2": PublishedCounts(3.359, 98.9, (1024, 2048), 19),
    "stdc1": PublishedCounts(8.28, 16.96, (512, 1024), 19),
    "stdc2": PublishedCounts(12.31, 23.57, (512, 1024), 19),
    "bssnet_t": PublishedCounts(8.39, 48.9, (1024, 2048), 19),
    "bssnet_b": PublishedCounts(32.07, 232.4, (1024, 2048), 19),
    "van_tiny_lightham": PublishedCounts(4.87, 11.14, (512, 512), 150),
    "van_tiny_lightham_d256": PublishedCounts(4.21, 6.33, (512, 512), 150),
    "van_small_lightham": PublishedCounts(14.7, None, (512, 512), 150),
    "van_base_lightham": PublishedCounts(27.4, None, (512, 512), 150),
    "van_large_lightham": PublishedCounts(45.6, None, (512, 512), 150),
}
