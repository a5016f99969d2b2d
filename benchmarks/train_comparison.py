"""Trains every registered segmentation network with the one comparison recipe
(`training/camvid-compare.yaml`), one after another, each in its own `bevanet-train` process.

    python benchmarks/train_comparison.py [--networks pidnet_s stdc1 ...] [--runs runs/compare]

Resumable: a network whose run already validated at the last iteration is skipped, and a killed
run resumes from its own `last.pt` (the engine's exact resume). A failed run is reported and the
queue goes on; the exit status is 1 if any failed. Then
`python benchmarks/compare_networks.py --runs runs/compare` prints the table with their mIoU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

from bevanet_core.models import list_models

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "training" / "camvid-compare.yaml"
# per-family departures from the recipe, each with its reason (the budget never changes)
FAMILY_OVERRIDES = {
    # the VAN rows of the README table were trained in fp32: in bf16 they went NaN, from the
    # CPU's wrong bf16 weight gradient of dilated depthwise convs on channels-last inputs (fixed
    # since in layers.channel_layer_norm; studies/cpu_bf16_conv_grads.py). Kept so that a
    # rerun reproduces the table; `--set run.precision=bf16` trains them in bf16.
    "van_": ["run.precision=fp32"],
}


def family_overrides(name: str) -> list:
    return [o for prefix, items in FAMILY_OVERRIDES.items() if name.startswith(prefix) for o in items]


def final_miou(run_dir: Path, iterations: int) -> Optional[float]:
    """The val mIoU logged at the last iteration, or None while the run is unfinished."""
    log = run_dir / "train.log.jsonl"
    if not log.is_file():
        return None
    for line in reversed(log.read_text().splitlines()):
        record = json.loads(line)
        if "val/miou" in record and record.get("iteration") == iterations:
            return float(record["val/miou"])
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="*", default=None, help="default: every registered network")
    p.add_argument("--runs", type=Path, default=Path("runs/compare"))
    p.add_argument("--recipe", type=Path, default=RECIPE)
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra overrides for every run (e.g. data.root=...); the budget stays the recipe's",
    )
    args = p.parse_args()
    networks = args.networks or list_models()
    unknown = sorted(set(networks) - set(list_models()))
    if unknown:
        p.error(f"unknown networks {unknown}; registered: {', '.join(list_models())}")
    iterations = int(yaml.safe_load(args.recipe.read_text())["optim"]["iterations"])
    failed = []
    for name in networks:
        run_dir = args.runs / name
        done = final_miou(run_dir, iterations)
        if done is not None:
            print(f"{name}: done, val mIoU {done:.2f}", flush=True)
            continue
        cmd = [
            sys.executable,
            "-m",
            "bevanet_core.cli.train",
            "--config",
            str(args.recipe),
            "--resume",
            "--set",
            f"model.variant={name}",
            f"run.out_dir={run_dir}",
            *family_overrides(name),
            *args.overrides,
        ]
        print(f"{name}: training -> {run_dir}", flush=True)
        t0 = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "console.log", "a") as console:
            rc = subprocess.call(cmd, stdout=console, stderr=subprocess.STDOUT)
        if rc != 0:  # go on with the others; a rerun resumes this one from its last checkpoint
            print(f"{name}: bevanet-train exited with {rc}; see {run_dir / 'console.log'}", flush=True)
            failed.append(name)
            continue
        print(f"{name}: val mIoU {final_miou(run_dir, iterations)} in {(time.time() - t0) / 60:.1f} min", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
