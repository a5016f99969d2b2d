"""Trains the shipped default model a sitting at a time, and ships the best so far.

    python scripts/train_default_model.py [--runs DIR] [--recipe YAML] [--set KEY=VALUE ...]
    python scripts/train_default_model.py --ship   # after (or while) training: ship the best so far

The run directory (checkpoints, best weights, logs) is kept outside the work tree, in
$BEVANET_RUNS or ~/.cache/bevanet_ros/runs, under the recipe's name. Where it holds a checkpoint,
training resumes it exactly. Where it does not (a fresh machine), training starts from the
committed default weights, at the iteration of the schedule they were taken from when they come
from a recipe with the same schedule, else at its start; or from random weights when the
committed ones trained on the drive the recipe holds out (the held-out recipe). Stopping the
process at any moment loses at most `run.checkpoint_every` iterations.

`--ship` hands the run's best weights to ship_default_model.py, which replaces the committed
model only when they score higher on val; for the train+val recipe, the latest average of its
weights, with the held-out recipe's run beside it as the proxy figure stored with the model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "training" / "bevanet-s_camvid-480x360-long.yaml"


def runs_root() -> Path:
    return Path(os.environ.get("BEVANET_RUNS") or Path.home() / ".cache" / "bevanet_ros" / "runs")


def recipe_drives(recipe, which: str) -> set:
    """The CamVid drives of a recipe's training ('train') or validation ('val') frames."""
    from bevanet_core.data.camvid_splits import camvid_sequence

    sys.path.insert(0, str(REPO / "scripts"))
    from ship_default_model import recipe_pairs

    if recipe.data.dataset != "camvid":
        return set()
    root = Path(recipe.data.root) if Path(recipe.data.root).is_absolute() else REPO / recipe.data.root
    return {camvid_sequence(image) for image, _ in recipe_pairs(recipe, which, root)}


def warm_start_overrides(recipe: Path, weights: Path) -> tuple[list, str]:
    """Overrides that start a run from `weights`, and why.

    Weights taken from a recipe with the same schedule (its optim section) continue that schedule
    at their iteration; others start it at 0. Weights that trained on a drive the recipe validates
    on are not used at all: the run starts from random weights, or its validation would measure
    memory (the held-out recipe and the shipped model, which trained on every drive of train).
    Returns the overrides and a line that says where the run starts."""
    from bevanet_core.checkpoint import read_checkpoint
    from bevanet_core.training.config import load_config

    _, info = read_checkpoint(weights)
    extra = info.extra if info is not None else {}
    mine = load_config(str(recipe), [])
    theirs_path = REPO / str(extra.get("recipe", ""))
    theirs = load_config(str(theirs_path), []) if extra.get("recipe") and theirs_path.is_file() else None
    if theirs is not None:
        held_out = recipe_drives(mine, "val") - recipe_drives(mine, "train")
        seen = recipe_drives(theirs, "train") & held_out
        if seen:
            return [], (
                f"from random weights: {weights.name} trained on {', '.join(sorted(seen))}, "
                f"the drive this recipe holds out"
            )
    same_schedule = theirs is not None and theirs.optim == mine.optim
    start = int(extra.get("iteration", 0)) if same_schedule else 0
    how = f"at iteration {start} of the schedule they were taken from" if start else "at the start of the schedule"
    return [f"model.pretrained={weights}", f"run.start_iteration={start}"], f"from {weights} {how}"


def seed_logs(run_dir: Path, committed_logs: Path) -> None:
    """Start a fresh run directory's logs from the committed ones, so that the next ship keeps the history."""
    for name in ("train.log.jsonl", "console.log"):
        committed = committed_logs / name
        if not committed.is_file():
            continue
        here = run_dir / name
        if not here.exists():
            shutil.copy(committed, here)
        elif name == "console.log":
            # the caller's own lines may be here already (a shell redirect, a note): put the history
            # before them, once, or the next ship would replace the committed log with these alone
            history, mine = committed.read_text(), here.read_text()
            if not mine.startswith(history):
                here.write_text(history + mine)


def ship(recipe: Path, run_dir: Path) -> int:
    """Hand the run to ship_default_model.py: its best weights on val; or, for a recipe that trains
    on val, the latest average of its weights, with the held-out run of the same recipe
    (<name>-heldout beside it) as its proxy figure."""
    sys.path.insert(0, str(REPO / "scripts"))
    from ship_default_model import trains_on_val

    data = REPO.parent / "shared" / "data" / "camvid"
    on_val = trains_on_val(recipe, data)
    candidate = run_dir / ("last.pt" if on_val else "best.safetensors")
    if not candidate.is_file():
        print(f"nothing to ship: {candidate} does not exist", file=sys.stderr)
        return 1
    cmd = [sys.executable, str(REPO / "scripts" / "ship_default_model.py"), str(candidate)]
    cmd += ["--recipe", f"training/{recipe.name}", "--name", run_dir.name]
    heldout = run_dir.parent / run_dir.name.replace("-trainval", "-heldout") / "last.pt"
    if on_val and heldout.is_file() and heldout.parent != run_dir:
        cmd += ["--proxy", str(heldout), "--proxy-recipe", f"training/{heldout.parent.name}.yaml"]
    return subprocess.call(cmd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    p.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="where run directories live (default: $BEVANET_RUNS or ~/.cache/bevanet_ros/runs)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="further recipe overrides, e.g. run.threads=2",
    )
    p.add_argument("--ship", action="store_true", help="ship the run's best weights instead of training")
    args = p.parse_args()

    from bevanet_core.checkpoint import DEFAULT_WEIGHTS

    run_dir = (args.runs or runs_root()) / args.recipe.stem
    if args.ship:
        return ship(args.recipe, run_dir)

    from bevanet_core.training.config import load_config
    from bevanet_core.training.engine import train

    overrides = [f"run.out_dir={run_dir}", *args.overrides]
    if (run_dir / "last.pt").is_file():
        print(f"resuming {run_dir}", flush=True)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        start, how = warm_start_overrides(args.recipe, DEFAULT_WEIGHTS)
        if start and start[-1] != "run.start_iteration=0":  # continuing a run: keep its history
            seed_logs(run_dir, REPO / "training" / "logs" / args.recipe.stem)
        overrides += start
        print(f"no run at {run_dir}: starting {how}", flush=True)
    cfg = load_config(str(args.recipe), overrides)
    result = train(cfg, resume="auto")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
