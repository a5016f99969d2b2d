"""Training throughput of BEVANet-S on a CPU: the engine as it was against each improvement,
side by side in one run.

    python benchmarks/bench_train.py                       # the full comparison (about 15 min)
    python benchmarks/bench_train.py --quick               # a small smoke run (tiny crops, 4 iterations)
    python benchmarks/bench_train.py --json r.json --md r.md

Every variant trains BEVANet-S on real CamVid train (`--data`, default ../shared/data/camvid) with
the shipped recipe (training/bevanet-s_camvid-480x360.yaml: 480x360 crops, batch 8, the OHEM +
boundary + aux objective, poly SGD, one data worker), from the same seed and the same start (the
committed weights, as the long run continues them; `--init none`: a random start), through the
engine's own `train()` in a fresh subprocess, logging every iteration.

- `before-*` variants run the engine of commit REFERENCE_COMMIT (extracted with `git archive`,
  so the reference is that code itself, not a copy), at fp32 and at bf16; the faster of the two
  at one thread is the reference, and the improvements run at its precision.
- `before-2-threads` is that engine with two intra-op threads: the same cores as the improved
  two-thread variants, and the float-noise floor of the loss comparison (only the order of the
  reductions changes).
- The improvements, cumulative: the fused objective, channels-last (dilated depthwise convs kept
  NCHW), two intra-op threads; and, as an alternative to the threads, two DDP processes (gloo)
  of half the batch each, whose BatchNorm statistics come from 4 images instead of 8, so their
  losses are not expected to match.

Rounds interleave the variants, so that other load on the machine hits them alike. Seconds per
iteration: the median of the per-iteration wall times (consecutive log stamps) after the first
three iterations, over all rounds. The losses of each variant in round 1 are compared with those
of the engine before at the same precision and one thread: at the first iteration (same weights,
same batch: the objective itself), the largest relative difference over all iterations (float
rounding grows along a trajectory; `before-2-threads` shows how far from reduction order alone),
and the mean loss of the second half.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
REFERENCE_COMMIT = "c0a6947"  # the engine before the fused objective, channels-last bf16 and precision auto
RECIPE = REPO / "training" / "bevanet-s_camvid-480x360.yaml"
SKIP_FIRST = 3  # warm-up iterations left out of the timing

RUNNER = """
import json, sys
from bevanet_core.training.config import load_config
from bevanet_core.training.engine import train
recipe, iterations, overrides = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
train(load_config(recipe, overrides), stop_after=iterations)
"""


@dataclass
class Variant:
    name: str
    tree: str  # "before" or "current"
    threads: int = 1
    processes: int = 1
    precision: Optional[str] = None  # None: the reference's
    overrides: list[str] = field(default_factory=list)
    comparable: bool = True  # same arithmetic as the reference up to float rounding
    note: str = ""


def variants(quick: bool) -> list[Variant]:
    before = [
        Variant("before-fp32", "before", precision="fp32", note="the engine before, fp32"),
        Variant("before-bf16", "before", precision="bf16", note="the engine before, bf16 autocast"),
    ]
    if quick:
        return before + [Variant("fused-objective", "current", note="one log-softmax, no sort, matrix upsampling")]
    return before + [
        Variant("before-2-threads", "before", threads=2, note="the engine before, 2 intra-op threads"),
        Variant("fused-objective", "current", note="one log-softmax, no sort, matrix upsampling"),
        Variant(
            "+channels-last",
            "current",
            overrides=["run.channels_last=true"],
            note="channels-last, dilated depthwise convs NCHW",
        ),
        Variant(
            "+2-threads",
            "current",
            threads=2,
            overrides=["run.channels_last=true"],
            note="fused + channels-last, 2 intra-op threads",
        ),
        Variant(
            "ddp-2-processes",
            "current",
            processes=2,
            overrides=["run.channels_last=true"],
            comparable=False,
            note="fused + channels-last, 2 DDP processes x batch 4 (BatchNorm over 4 images)",
        ),
    ]


def extract_reference(dest: Path) -> Path:
    """The reference engine's package, from git history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", REFERENCE_COMMIT, "bevanet_core"], check=True, capture_output=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise SystemExit(
            f"cannot extract the reference engine (commit {REFERENCE_COMMIT}) with git archive: "
            f"{detail.decode(errors='replace').strip() or exc}; run this from a git clone "
            "with its history"
        ) from None
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_variant(v: Variant, tree: Path, work: Path, args, precision: str, round_index: int) -> dict:
    out_dir = work / f"{v.name}-round{round_index}"
    batch = args.batch // v.processes
    overrides = [
        f"data.root={args.data}",
        f"run.out_dir={out_dir}",
        "run.log_every=1",
        "run.checkpoint_every=0",
        "run.val_every=0",
        f"run.threads={v.threads}",
        f"run.precision={precision}",
        f"optim.batch_size={batch}",
        *args.recipe_overrides,
        *v.overrides,
    ]
    runner = work / "runner.py"
    runner.write_text(RUNNER)
    if v.processes == 1:
        cmd = [sys.executable, str(runner)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={v.processes}",
            str(runner),
        ]
    cmd += [str(args.recipe), str(args.iterations), json.dumps(overrides)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(v.threads)}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"variant {v.name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    records = [json.loads(line) for line in (out_dir / "train.log.jsonl").read_text().splitlines()]
    records = [r for r in records if "train/loss" in r]
    stamps = [r["time"] for r in records]
    return {
        "losses": [r["train/loss"] for r in records],
        "iteration_s": [b - a for a, b in itertools.pairwise(stamps)][SKIP_FIRST - 1 :],
        "wall_s": time.time() - t0,
    }


def max_relative_difference(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a[:n], b[:n], strict=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    p.add_argument("--recipe", type=Path, default=RECIPE)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="images per iteration, over all processes")
    p.add_argument("--init", default="shipped", help="'shipped' (the committed weights), 'none', or a weights file")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 128x96 crops, batch 2, 5 iterations, 1 round, the reference and one improvement",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    args = p.parse_args(argv)
    args.recipe_overrides = []
    if args.init != "none":
        weights = (
            REPO / "bevanet_core" / "weights" / "bevanet_s_camvid.safetensors"
            if args.init == "shipped"
            else Path(args.init).resolve()
        )
        args.recipe_overrides.append(f"model.pretrained={weights}")
    if args.quick:
        args.iterations, args.rounds, args.batch = 5, 1, 2
        args.recipe_overrides += ["data.base_size=128", "data.crop_size=[128,96]"]
    if args.iterations <= SKIP_FIRST:
        p.error(f"--iterations must exceed the {SKIP_FIRST} warm-up iterations")
    if not (args.data / "train.lst").is_file():
        p.error(f"no CamVid train list at {args.data / 'train.lst'}; pass --data")
    args.data = args.data.resolve()

    sys.path.insert(0, str(REPO))
    from bevanet_core.hardware import cpu_info

    cpu = cpu_info().describe()
    todo = variants(args.quick)
    results: dict[str, dict] = {v.name: {"iteration_s": [], "losses": None} for v in todo}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        (work / "before").mkdir()
        trees = {"before": extract_reference(work / "before"), "current": REPO}
        reference_precision = None
        for r in range(args.rounds):
            for v in todo:
                if v.precision is None and reference_precision is None:  # after before-fp32 and before-bf16
                    speed = {n: statistics.median(results[n]["iteration_s"]) for n in ("before-fp32", "before-bf16")}
                    reference_precision = min(speed, key=speed.get).split("-")[1]
                precision = v.precision or reference_precision or "fp32"
                res = run_variant(v, trees[v.tree], work, args, precision, r)
                results[v.name]["iteration_s"] += res["iteration_s"]
                results[v.name]["precision"] = precision
                if results[v.name]["losses"] is None:
                    results[v.name]["losses"] = res["losses"]
                print(
                    f"round {r + 1}/{args.rounds} {v.name:<18} {precision:<5} "
                    f"{statistics.median(res['iteration_s']):6.2f} s/it",
                    flush=True,
                )

    reference = f"before-{reference_precision}"
    ref_s = statistics.median(results[reference]["iteration_s"])
    rows = []
    for v in todo:
        res = results[v.name]
        s_it = statistics.median(res["iteration_s"])
        baseline = f"before-{res['precision']}"  # the engine before, at the same precision, one thread
        ref_losses = results[baseline]["losses"]
        compare = v.name != baseline
        half = len(res["losses"]) // 2
        rows.append(
            {
                "variant": v.name,
                "note": v.note,
                "threads": v.threads,
                "processes": v.processes,
                "precision": res["precision"],
                "s_per_iter": s_it,
                "speedup": ref_s / s_it,
                "loss_first_rel_diff": abs(res["losses"][0] - ref_losses[0]) / ref_losses[0] if compare else None,
                "loss_max_rel_diff": max_relative_difference(res["losses"], ref_losses) if compare else None,
                "loss_second_half_mean": statistics.mean(res["losses"][half:]),
                "comparable": v.comparable,
                "samples": len(res["iteration_s"]),
            }
        )
    report = {
        "cpu": cpu,
        "reference": reference,
        "reference_commit": REFERENCE_COMMIT,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "batch": args.batch,
        "quick": args.quick,
        "init": args.init,
        "loss_iterations": args.iterations,
        "rows": rows,
        "losses": {v.name: results[v.name]["losses"] for v in todo},
    }
    lines = [
        f"CPU: {cpu}; reference: {reference} (commit {REFERENCE_COMMIT}, 1 thread); "
        f"{args.rounds} rounds x {args.iterations} iterations, batch {args.batch}, start: {args.init} weights",
        "",
        "| variant | what | threads x processes | precision | s/it (median) | it/s vs reference "
        "| loss rel. difference: first it / max | mean loss, 2nd half |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        diff = (
            "-"
            if row["loss_max_rel_diff"] is None
            else f"{row['loss_first_rel_diff']:.1e} / {row['loss_max_rel_diff']:.1e}"
        )
        if not row["comparable"] and row["loss_max_rel_diff"] is not None:
            diff += " (other BN batch)"
        lines.append(
            f"| {row['variant']} | {row['note']} | {row['threads']} x {row['processes']} | "
            f"{row['precision']} | {row['s_per_iter']:.2f} | {row['speedup']:.2f}x | {diff} | "
            f"{row['loss_second_half_mean']:.3f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
