"""Latency and throughput of the runtime, next to the authors' speed protocol in the same run.

Pipeline figures time what a camera node sees: uint8 frames in host memory -> uint8 masks in
host memory at the frame's resolution (upload, resize, normalise, inference, upsample, argmax,
download). The `reference` block follows the BEVANet/PIDNet authors' protocol: random float
input already on the device, batch 1, fp32 eager PyTorch, BN not fused, cudnn.benchmark off,
10 warm-up runs, synchronised timing, no final upsampling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from ..hardware import machine
from ..imaging.geometry import parse_size
from ..options import DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_PRECISION
from ..timing import summarize, time_call, time_calls
from .segmenter import Segmenter, SegmenterConfig


@dataclasses.dataclass
class BenchConfig:
    variant: str = "bevanet_s"
    size: tuple[int, int] = (480, 360)  # network input (W, H)
    frame_size: Optional[tuple[int, int]] = None  # camera frame (W, H); None = network size
    backend: str = DEFAULT_BACKEND  # the node's defaults: what a default deployment runs
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    batch: int = 1
    runs: int = 50
    warmup: int = 10
    weights: Optional[str] = None  # None = seeded random weights (speed does not depend on them)
    num_classes: int = 19
    resize: str = "stretch"
    upsample: str = "logits"
    compile: bool = False
    fold_bn: bool = True
    channels_last: Optional[bool] = None  # None = on CUDA
    cuda_graphs: Optional[bool] = None  # None = on CUDA
    reference: bool = True
    cache_dir: Optional[str] = None
    threads: Optional[int] = None  # CPU threads for every backend (None = hardware.default_threads())
    calibration_images: Optional[str] = None  # real frames for int8 on onnxruntime/openvino
    seed: int = 0


def _sync(device: torch.device):
    """What ends a timed call on `device`: a CUDA synchronise (None on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def _model(cfg: BenchConfig):
    from ..checkpoint import ModelInfo, load_model
    from ..models import build_model

    if cfg.weights:
        return load_model(cfg.weights, variant=cfg.variant)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.variant, num_classes=cfg.num_classes).eval()
    return model, ModelInfo.default(cfg.variant, cfg.num_classes, input_size=tuple(cfg.size))


def reference_protocol(
    model: nn.Module, size: tuple[int, int], device: str = "cpu", runs: int = 50, warmup: int = 10
) -> dict[str, Any]:
    """The authors' protocol: fp32 eager, batch 1, BN not fused, random input, no upsampling."""
    dev = torch.device(device)
    net = model.float().to(dev).eval()
    cudnn = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    x = torch.randn(1, 3, size[1], size[0], device=dev)
    try:
        with torch.no_grad():
            times = time_calls(lambda: net(x), runs, warmup, sync=_sync(dev))
    finally:
        torch.backends.cudnn.benchmark = cudnn
    out = summarize(times, 1)
    out.update(
        protocol="authors: random input, batch 1, fp32 eager, BN not fused, no final upsampling",
        precision="fp32",
    )
    return out


def run_benchmark(cfg: BenchConfig) -> dict[str, Any]:
    """Benchmarks one backend/precision/size/batch; returns a JSON-able dict."""
    size = parse_size(cfg.size, "size", 8)
    frame_w, frame_h = parse_size(cfg.frame_size, "frame_size") if cfg.frame_size else size
    model, info = _model(cfg)
    seg_cfg = SegmenterConfig(
        backend=cfg.backend,
        device=cfg.device,
        precision=cfg.precision,
        input_size=size,
        resize=cfg.resize,
        upsample=cfg.upsample,
        max_batch=max(cfg.batch, 1),
        compile=cfg.compile,
        fold_bn=cfg.fold_bn,
        channels_last=cfg.channels_last,
        cuda_graphs=cfg.cuda_graphs,
        cache_dir=cfg.cache_dir,
        num_threads=cfg.threads,
        calibration_images=cfg.calibration_images,
    )
    if cfg.weights and cfg.backend != "torch":
        seg = Segmenter(dataclasses.replace(seg_cfg, weights=cfg.weights))
    else:
        seg = Segmenter.from_model(model, info, **dataclasses.asdict(seg_cfg))
    rng = np.random.default_rng(cfg.seed)
    frames = [rng.integers(0, 256, size=(frame_h, frame_w, 3), dtype=np.uint8) for _ in range(cfg.batch)]
    for _ in range(cfg.warmup):
        seg.segment_batch(frames, "rgb8")
    times, stages = [], {"preprocess": [], "inference": [], "postprocess": []}
    for _ in range(cfg.runs):  # masks come back in host memory: each call ends synchronised
        ms, results = time_call(lambda: seg.segment_batch(frames, "rgb8"))
        times.append(ms)
        for k in stages:
            stages[k].append(results[0].timings[k])
    pipeline = seg.pipeline
    choice = seg.backend_choice
    seg.close()
    report: dict[str, Any] = {
        "variant": info.variant,
        "size": list(size),
        "frame_size": [frame_w, frame_h],
        # what ran (after backend / precision 'auto'), and what was asked
        "backend": pipeline["backend"],
        "device": pipeline["device"],
        "precision": pipeline["precision"],
        "threads": pipeline["threads"],
        "weights": cfg.weights or f"seeded random {cfg.variant} ({cfg.num_classes} classes)",
        "asked": {"backend": cfg.backend, "precision": cfg.precision, "threads": cfg.threads},
        "backend_choice": choice,
        "resize": cfg.resize,
        "upsample": cfg.upsample,
        "protocol": "uint8 frames in host memory -> uint8 masks in host memory, frame resolution",
        **summarize(times, cfg.batch),
        "stages_ms_p50": {k: float(np.median(v)) for k, v in stages.items()},
        "environment": machine(cfg.device),
    }
    if cfg.reference:
        report["reference"] = reference_protocol(model, size, cfg.device, cfg.runs, cfg.warmup)
    return report


def plot_reports(reports: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
    """Bar chart of p50 latency (with p90/p99 whiskers) per configuration, reference included."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, p50, p90, p99 = [], [], [], []
    for r in reports:
        entries = [(f"{r['backend']} {r['precision']} b{r['batch']}", r)]
        if "reference" in r:
            entries.append((f"authors' protocol ({r['device']})", r["reference"]))
        for label, e in entries:
            if label in labels:
                continue
            labels.append(label)
            p50.append(e["latency_ms"]["p50"])
            p90.append(e["latency_ms"]["p90"])
            p99.append(e["latency_ms"]["p99"])
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(labels)), 4))
    xs = np.arange(len(labels))
    ax.bar(xs, p50, color="#4878a8", label="p50")
    ax.errorbar(
        xs,
        p50,
        yerr=[np.zeros(len(xs)), np.array(p99) - np.array(p50)],
        fmt="none",
        ecolor="k",
        capsize=4,
        label="p99",
    )
    ax.scatter(xs, p90, color="#d08030", zorder=3, label="p90")
    ax.set_xticks(xs, labels, rotation=20, ha="right")
    ax.set_ylabel("latency per batch (ms)")
    ax.set_title(title or "BEVANet runtime latency")
    ax.legend()
    fig.tight_layout()
    from ..paths import atomic_write

    suffix = "." + path.rsplit(".", 1)[-1] if "." in path else ".png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=suffix[1:]))
    plt.close(fig)
