"""The same-budget network comparison: for every registered segmentation network, parameters,
MACs, CPU speed through the fastest CPU backend, and CamVid val mIoU after the same training
budget.

    python benchmarks/train_comparison.py              # trains every network (resumable)
    python benchmarks/compare_networks.py [--runs runs/compare] [--size 480x360] [--threads 1]

Speed: each network runs frame in -> mask out (uint8 480x360 frame, the runtime's pre- and
post-processing included) through ONNX Runtime (fp32) and PyTorch (bf16 autocast on CPUs that
have it), with seeded weights; speed does not depend on them. Every network and backend is timed
in each of `--rounds` interleaved rounds (median of `--runs-per-net` calls per round, then the
median over rounds), so machine load drifts hit all of them alike. The table gives the fastest
backend per network and its speed relative to BEVANet-S measured in the same run (> 1: faster);
the milliseconds go to the JSON only, since they hold for this machine alone.

mIoU: the val mIoU logged at the last iteration of RUNS/<network>/train.log.jsonl, written by
`bevanet-train --config training/camvid-compare.yaml` (the budget is stated there).
`--miou-only table.json` reprints an earlier table with the mIoU re-read (no timing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from train_comparison import RECIPE, final_miou  # benchmarks/ is the script's own folder

from bevanet_core.checkpoint import ModelInfo
from bevanet_core.hardware import machine
from bevanet_core.models import build_model, list_models
from bevanet_core.models.complexity import count_macs, count_parameters
from bevanet_core.runtime import Segmenter

REFERENCE = "bevanet_s"


def _segmenters(name: str, size, threads: int, cache: Path) -> dict[str, Segmenter]:
    torch.manual_seed(0)
    model = build_model(name, num_classes=11).eval()
    info = ModelInfo.default(name, 11, input_size=tuple(size))
    common = dict(device="cpu", input_size=tuple(size), num_threads=threads, cache_dir=str(cache))
    return {
        "onnxruntime fp32": Segmenter.from_model(model, info, backend="onnxruntime", precision="fp32", **common),
        "torch bf16": Segmenter.from_model(model, info, backend="torch", precision="bf16", **common),
    }


def _time(seg: Segmenter, frame: np.ndarray, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        seg.segment(frame, encoding="rgb8")
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="480x360", help="frame and network input size WxH")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs-per-net", type=int, default=5)
    p.add_argument("--networks", nargs="*", default=None, help="default: every registered network")
    p.add_argument("--runs", type=Path, default=Path("runs/compare"), help="folder of the comparison runs")
    p.add_argument("--cache", type=Path, default=Path("runs/compare/onnx_cache"))
    p.add_argument("--json", dest="json_out")
    p.add_argument(
        "--miou-only",
        type=Path,
        metavar="JSON",
        help="no timing: reprint the table of an earlier --json with the mIoU column re-read "
        "from --runs (for runs that finished after the speed was measured)",
    )
    args = p.parse_args()
    iterations = int(yaml.safe_load(RECIPE.read_text())["optim"]["iterations"])
    if args.miou_only:
        report = json.loads(args.miou_only.read_text())
        for row in report["rows"]:
            row["camvid_val_miou"] = final_miou(args.runs / row["network"], iterations)
        print_table(report, iterations)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2))
        return
    w, h = (int(v) for v in args.size.split("x"))
    networks = args.networks or list_models()
    if REFERENCE not in networks:
        networks = [REFERENCE, *networks]
    torch.set_num_threads(args.threads)
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)

    rows: dict[str, dict] = {}
    segs: dict[str, dict[str, Segmenter]] = {}
    for name in networks:
        model = build_model(name, num_classes=11).eval()
        rows[name] = dict(
            network=name,
            params=count_parameters(model),
            gmacs=count_macs(model, (h, w)) / 1e9,
            camvid_val_miou=final_miou(args.runs / name, iterations),
            ms={},
        )
        segs[name] = _segmenters(name, (w, h), args.threads, args.cache)
        for seg in segs[name].values():
            for _ in range(3):  # warm-up
                seg.segment(frame, encoding="rgb8")
        print(f"  built {name}", flush=True)
    per_round: dict[str, dict[str, list[float]]] = {n: {b: [] for b in segs[n]} for n in networks}
    for r in range(args.rounds):
        for name in networks:
            for backend, seg in segs[name].items():
                per_round[name][backend].append(_time(seg, frame, args.runs_per_net))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    for name in networks:
        ms = {b: statistics.median(v) for b, v in per_round[name].items()}
        best = min(ms, key=ms.get)
        rows[name].update(ms=ms, fastest_backend=best, fastest_ms=ms[best])
    ref_ms = rows[REFERENCE]["fastest_ms"]
    for row in rows.values():
        row["speed_vs_bevanet_s"] = ref_ms / row["fastest_ms"]

    report = {
        "size": [w, h],
        "threads": args.threads,
        "rounds": args.rounds,
        "runs_per_net": args.runs_per_net,
        "environment": machine("cpu"),
        "rows": list(rows.values()),
    }
    print_table(report, iterations)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


def print_table(report: dict, iterations: int) -> None:
    w, h = report["size"]
    print(
        f"\n| network | parameters | GMACs at {w}x{h} | fastest CPU backend | speed vs BEVANet-S "
        f"| CamVid val mIoU ({iterations} it) |"
    )
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for row in report["rows"]:
        miou = "not trained" if row["camvid_val_miou"] is None else f"{row['camvid_val_miou']:.2f}"
        print(
            f"| {row['network']} | {row['params']:,} | {row['gmacs']:.2f} | {row['fastest_backend']} "
            f"| {row['speed_vs_bevanet_s']:.2f}x | {miou} |"
        )


if __name__ == "__main__":
    main()
