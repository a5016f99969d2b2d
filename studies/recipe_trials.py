"""Short controlled training runs that compare recipe changes: same start, same budget, several seeds.

    python studies/recipe_trials.py --iterations 150 --seeds 304 305 \\
        --arm none=data.class_weights=null --arm sqrt-mfb=data.class_weights=sqrt-median-frequency

Every trial starts from the same weights (default: the committed default model, continuing its
recipe's schedule at the iteration they were taken from), trains `--iterations` iterations of
the recipe with the arm's overrides and one seed, and is then evaluated on the recipe's val list
(single scale, fp32, every image). `--from scratch` starts every trial from random weights, with
a schedule of its own that ends at `--iterations` (the learning rate decays to its end), as the
held-out recipe's trials are run:

    python studies/recipe_trials.py --recipe training/bevanet-s_camvid-480x360-heldout.yaml \\
        --from scratch --iterations 1600 --seeds 304 --val-every 400 --arm base= --arm mount=data.geometric=mount

An arm is a name and comma-separated `section.key=value` overrides (`name=` for the recipe as it
is). The weights evaluated are an average of the trial's weights (`--ema`, short enough to forget
the start), because the raw weights of a few hundred iterations at a high learning rate are too
noisy to compare arms on.

Trials live in `--out` (default ~/.cache/bevanet_ros/trials/<recipe stem>), one directory each; a
finished trial keeps its result.json and the weights it was evaluated with (weights.safetensors,
which scripts/ship_default_model.py ships as they are) and is not run again, a killed one resumes from its
checkpoint. The table (mean over seeds per arm, per-class IoU, seconds per iteration, CPU) is
printed as Markdown and written to `--json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_RECIPE = REPO / "training" / "bevanet-s_camvid-480x360-long.yaml"


def _split_top_level(text: str):
    """`text` split at the commas outside brackets, so `data.class_weights=[1, 2]` stays whole."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def parse_arm(text: str):
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"an arm looks like NAME=section.key=value[,...] or NAME=, got {text!r}")
    overrides = [o for o in _split_top_level(rest) if o] if rest else []
    for o in overrides:
        if "=" not in o or "." not in o.split("=", 1)[0]:
            raise argparse.ArgumentTypeError(f"arm {name}: override must look like section.key=value, got {o!r}")
    return name, overrides


# run keys a trial sets itself or that do not change what it trains: where it writes, how often it
# logs, validates and checkpoints, its threads, and when a full run would stop on a flat curve
TRIAL_BLIND_RUN_KEYS = (
    "out_dir",
    "threads",
    "val_every",
    "log_every",
    "checkpoint_every",
    "plateau_window",
    "plateau_gain",
)


def recipe_digest(recipe: Path) -> str:
    """SHA-256 of the recipe's settings (its YAML parsed, keys sorted), blind to comments and layout
    and to the run keys a trial sets itself (TRIAL_BLIND_RUN_KEYS)."""
    import yaml

    settings = yaml.safe_load(recipe.read_text())
    if isinstance(settings, dict) and isinstance(settings.get("run"), dict):
        settings["run"] = {k: v for k, v in settings["run"].items() if k not in TRIAL_BLIND_RUN_KEYS}
        if not settings["run"]:
            del settings["run"]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def start_of(weights: Path, recipe: Path) -> int:
    """The schedule iteration `weights` were taken at, when they come from `recipe`; else 0."""
    from bevanet_core.checkpoint import read_checkpoint

    _, info = read_checkpoint(weights)
    extra = info.extra if info is not None else {}
    return int(extra.get("iteration", 0)) if extra.get("recipe") == f"training/{recipe.name}" else 0


def run_trial(
    recipe: Path,
    weights: Optional[Path],
    start: int,
    iterations: int,
    seed: int,
    overrides,
    out: Path,
    threads: int,
    ema: float,
    val_every: int = 0,
) -> dict:
    from bevanet_core.checkpoint import save_weights
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training.config import load_config
    from bevanet_core.training.engine import Trainer
    from bevanet_core.training.validation import evaluate

    result_path = out / "result.json"
    settings = {
        "recipe": f"training/{recipe.name}",
        "recipe_sha256": recipe_digest(recipe),  # an edited recipe is another trial; an edited comment is not
        "weights": str(weights) if weights else "scratch",
        "start_iteration": start,
        "iterations": iterations,
        "seed": seed,
        "overrides": overrides,
        "ema_decay": ema,
    }
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("settings") != settings:
            raise SystemExit(f"{out} holds a trial with other settings; remove it or choose another --out")
        return result
    # from scratch the trial's schedule is its own; from weights it continues the recipe's
    start_from = (
        [f"model.pretrained={weights}"] if weights else ["model.pretrained=null", f"optim.iterations={iterations}"]
    )
    cfg = load_config(
        str(recipe),
        [
            f"run.out_dir={out}",
            *start_from,
            f"run.start_iteration={start}",
            f"run.seed={seed}",
            f"run.val_every={val_every}",
            "run.checkpoint_every=25",
            f"run.ema_decay={ema}",
            f"run.threads={threads}",
            "run.time_budget_min=0",
            "run.plateau_window=0",  # a trial trains its whole budget
            *overrides,
        ],
    )
    trainer = Trainer(cfg)
    trainer.resume("auto")
    remaining = start + iterations - trainer.iteration
    t0 = time.time()
    if remaining > 0:
        trainer.fit(stop_after=remaining)
    # the speed of this call's iterations; a trial resumed with nothing left to train has none
    s_per_iter = (time.time() - t0) / remaining if remaining > 0 else None
    model = trainer.ema.model if trainer.ema is not None else trainer.model
    cm = evaluate(
        model,
        trainer.val_set,
        trainer.device,
        cfg.model.num_classes,
        "fp32",
        align_corners=logits_align_corners(cfg.model.variant),
    )
    metrics = cm.as_dict(trainer.info.class_names)
    result = {
        "settings": settings,
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "per_class_iou": metrics["per_class_iou"],
        "class_weights": trainer.class_weights,
        "precision": cfg.run.precision,
        "s_per_iter": s_per_iter,
        "curve": [{"iteration": h["iteration"], "miou": h["val_miou"]} for h in trainer.history if "val_miou" in h],
    }
    # the evaluated weights are kept beside the result: an arm that wins can be shipped as it is
    # (scripts/ship_default_model.py TRIAL/weights.safetensors)
    trainer.info.extra = {
        **trainer.info.extra,
        "recipe": settings["recipe"],
        "iteration": trainer.iteration,
        "val_miou": round(metrics["miou"], 2),
        "trial_overrides": ",".join(overrides),
        "trial_seed": seed,
    }
    save_weights(model, out / "weights.safetensors", trainer.info)
    tmp = result_path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_path)
    (out / "last.pt").unlink(missing_ok=True)  # the result is what is kept; the checkpoint is 180 MB
    return result


def table(results: dict, class_names) -> str:
    head = "| arm | seeds | val mIoU (mean) | per seed | " + " | ".join(class_names) + " | s/it |"
    rows = [head, "|" + "---|" * (5 + len(class_names))]
    for arm, trials in results.items():
        mious = [t["miou"] for t in trials]
        per_class = [sum(t["per_class_iou"][c] or 0.0 for t in trials) / len(trials) for c in class_names]
        speeds = [t["s_per_iter"] for t in trials if t["s_per_iter"]]
        speed = f"{sorted(speeds)[len(speeds) // 2]:.2f}" if speeds else "-"
        rows.append(
            f"| {arm} | {len(trials)} | {sum(mious) / len(mious):.2f} | "
            + " / ".join(f"{m:.2f}" for m in mious)
            + " | "
            + " | ".join(f"{v:.1f}" for v in per_class)
            + f" | {speed} |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    p.add_argument(
        "--from",
        dest="weights",
        default=None,
        help="weights every trial starts from (default: the committed default model), or "
        "'scratch' for random weights and a schedule that ends with the trial",
    )
    p.add_argument(
        "--start-iteration",
        type=int,
        default=None,
        help="schedule iteration to start at (default: where the weights were taken, "
        "when they come from the recipe, else 0)",
    )
    p.add_argument("--iterations", type=int, default=150, help="training iterations per trial")
    p.add_argument("--seeds", type=int, nargs="+", default=[304, 305])
    p.add_argument(
        "--arm",
        dest="arms",
        type=parse_arm,
        action="append",
        required=True,
        metavar="NAME=OVERRIDES",
        help="an arm: NAME=section.key=value[,section.key=value] (repeat)",
    )
    p.add_argument("--ema", type=float, default=0.98, help="decay of the weight average that is evaluated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--val-every",
        type=int,
        default=0,
        help="also validate every N iterations during a trial, for its curve (default: at the end only)",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write every trial's result and the table here")
    args = p.parse_args()
    if args.iterations < 1:
        p.error(f"--iterations must be at least 1, got {args.iterations}")
    if not 0.0 <= args.ema < 1.0:
        p.error(f"--ema must be in [0, 1), got {args.ema}")

    import torch

    from bevanet_core.checkpoint import DEFAULT_WEIGHTS
    from bevanet_core.hardware import cpu_info

    torch.set_num_threads(args.threads)
    if args.weights == "scratch":
        weights, start = None, 0
    else:
        weights = Path(args.weights).resolve() if args.weights else DEFAULT_WEIGHTS.resolve()
        start = args.start_iteration if args.start_iteration is not None else start_of(weights, args.recipe)
    origin = weights.name if weights else "scratch"
    out = args.out or Path.home() / ".cache" / "bevanet_ros" / "trials" / args.recipe.stem
    results, class_names = {}, None
    for seed in args.seeds:  # every arm at one seed first: a paired comparison comes early
        for name, overrides in args.arms:
            print(
                f"[trials] {name} seed {seed}: {args.iterations} iterations from {origin} at {start}"
                + (f" with {', '.join(overrides)}" if overrides else ""),
                flush=True,
            )
            r = run_trial(
                args.recipe,
                weights,
                start,
                args.iterations,
                seed,
                overrides,
                out / name / f"seed{seed}",
                args.threads,
                args.ema,
                args.val_every,
            )
            print(f"[trials] {name} seed {seed}: val mIoU {r['miou']:.2f}", flush=True)
            results.setdefault(name, []).append(r)
            class_names = list(r["per_class_iou"])
    text = table(results, class_names)
    cpu = cpu_info().describe()
    print(
        f"\n{args.iterations} iterations per trial from {origin} (schedule iteration {start}), "
        f"{args.threads} thread(s), {cpu}\n\n{text}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu,
                    "iterations": args.iterations,
                    "start_iteration": start,
                    "weights": str(weights or "scratch"),
                    "trials": results,
                    "table": text,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
