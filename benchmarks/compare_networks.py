"""The network comparison of issue 7: for every registered segmentation network, parameters,
MACs, CPU speed through the fastest CPU backend (ONNX Runtime, frame in -> mask out) and CamVid
val mIoU after the same training budget (when that run exists).

    python benchmarks/compare_networks.py [--size 480x360] [--threads 1] [--runs DIR] [--json OUT]

mIoU comes from RUNS/<network>_camvid-480x360/train.log.jsonl (best val mIoU of
`bevanet-train --config training/<network>_camvid-480x360.yaml`, all with the same budget).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bevanet_core.models import build_model, list_models
from bevanet_core.models.complexity import count_macs, count_parameters
from bevanet_core.runtime.benchmark import BenchConfig, run_benchmark


def best_val_miou(run_dir: Path):
    log = run_dir / "train.log.jsonl"
    if not log.is_file():
        return None
    values = [r["val/miou"] for r in map(json.loads, log.read_text().splitlines()) if "val/miou" in r]
    return max(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="480x360")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs-per-net", type=int, default=10)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder holding the training runs")
    p.add_argument("--json", dest="json_out")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rows = []
    for name in list_models():
        model = build_model(name, num_classes=11).eval()
        bench = run_benchmark(BenchConfig(variant=name, size=(w, h), backend="onnxruntime", num_classes=11,
                                          runs=args.runs_per_net, warmup=3, threads=args.threads,
                                          reference=False))
        rows.append(dict(network=name, params=count_parameters(model), gmacs=count_macs(model, (h, w)) / 1e9,
                         ort_p50_ms=bench["latency_ms"]["p50"], ort_fps=bench["fps"],
                         camvid_val_miou=best_val_miou(args.runs / f"{name.replace('_', '-')}_camvid-480x360")))
        print(f"  {name}: {rows[-1]['ort_p50_ms']:.1f} ms", flush=True)
    print(f"\n| network | parameters | GMACs at {w}x{h} | ORT CPU p50 ms | FPS | CamVid val mIoU |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        miou = "not trained yet" if r["camvid_val_miou"] is None else f"{r['camvid_val_miou']:.2f}"
        print(f"| {r['network']} | {r['params']:,} | {r['gmacs']:.2f} | {r['ort_p50_ms']:.1f} | {r['ort_fps']:.2f} | {miou} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
