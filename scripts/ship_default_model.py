"""Turns a training run into the shipped default model, when it is better than the one shipped.

    python scripts/ship_default_model.py RUN_DIR|WEIGHTS [--recipe training/NAME.yaml] [--force]
                                         [--out bevanet_core/weights/bevanet_s_camvid.safetensors]
    python scripts/ship_default_model.py --proxy HELDOUT_RUN_DIR --proxy-only

Takes RUN_DIR/best.safetensors (best validation mIoU), or a weights file whose folder holds the
run's logs (what scripts/gpu_train.py brings back), drops the training-only heads, stores fp16
tensors with the class names, palette, normalisation, input size, recipe, iteration and val mIoU
in the metadata. Both the candidate and the model now at --out are evaluated on CamVid val as
shipped (fp16 weights, fp32 inference, all images, 480x360), and the candidate replaces the file
only when it scores higher (--force ships it anyway). The run's resolved config, training log and
console log are copied to training/logs/<run name>/.

A recipe that trains on val's frames (train+val) leaves nothing labelled to choose on: val then
only shows that training ran (the candidate ships unless it scores more than --val-slack below the
shipped model there), and --proxy names the weights of the same recipe's run that held a drive out
(training/<recipe>-heldout.yaml), whose figure on that drive is stored with the model as its
honest one. `--proxy RUN --proxy-only` measures that run again and rewrites the `proxy` record of
--out alone (tensors, calibration and every other record kept), for the held-out run goes on
after the train+val run has ended.

A shipped model starts uncalibrated: fit its calibration again after shipping (bevanet-calibrate,
docs/training.md), which this script reminds of when the model it replaces had one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model, read_checkpoint, save_weights
from bevanet_core.data.datasets import build_dataset
from bevanet_core.data.transforms import EvalTransform
from bevanet_core.evaluation.calibration import CALIBRATION_KEY
from bevanet_core.options import logits_align_corners
from bevanet_core.training.validation import evaluate

REPO = Path(__file__).resolve().parents[1]


def val_miou(weights: Path, data: Path) -> float:
    model, info = load_model(weights)
    val = build_dataset("camvid", data, data / "val.lst", "val", EvalTransform(), "index", 0)
    return evaluate(
        model, val, torch.device("cpu"), info.num_classes, align_corners=logits_align_corners(info.variant)
    ).miou()


def recipe_pairs(cfg, which: str, root: Path) -> list:
    """The CamVid (image, label) pairs of a loaded recipe's training ('train') or validation
    ('val') frames under `root`: its list file where it names one, else its named split."""
    from bevanet_core.data.camvid_splits import camvid_split_pairs
    from bevanet_core.data.files import read_pair_list

    listed = cfg.data.train_list if which == "train" else cfg.data.val_list
    split = cfg.data.train_split if which == "train" else cfg.data.val_split
    return read_pair_list(root, root / listed) if listed else camvid_split_pairs(root, split)


def trains_on_val(recipe: Path, data: Path) -> bool:
    """Whether a recipe's training frames include CamVid val's."""
    from bevanet_core.data.camvid_splits import camvid_split_pairs
    from bevanet_core.training.config import load_config

    cfg = load_config(str(recipe), [f"data.root={data}"])
    if cfg.data.dataset != "camvid":
        return False
    val = {image.name for image, _ in camvid_split_pairs(data, "val")}
    return any(image.name in val for image, _ in recipe_pairs(cfg, "train", data))


def proxy_figure(weights: Path, data: Path, recipe: Optional[str] = None, known_recipe: Optional[str] = None) -> dict:
    """The held-out run's figure: its weights (a run directory's last.pt or a weights file) on the
    drive its recipe held out; from a run's checkpoint, with the curve validated on the way and how
    much it rose over the recipe's `run.plateau_window` (whether it is flat by `run.plateau_gain`).
    The recipe: `recipe`, else the one the weights name, else `known_recipe` (an earlier record's)."""
    from bevanet_core.data.camvid_splits import CAMVID_HELDOUT_SEQUENCES
    from bevanet_core.training.plateau import window_gain

    with tempfile.TemporaryDirectory() as tmp:
        if weights.is_dir():
            weights = weights / "last.pt"
        path = (
            weights_of_training_checkpoint(weights, Path(tmp) / "p.safetensors") if weights.suffix == ".pt" else weights
        )
        model, info = load_model(path)
        held = build_dataset("camvid", data, None, "heldout", EvalTransform(), "index", 0)
        miou = evaluate(
            model, held, torch.device("cpu"), info.num_classes, align_corners=logits_align_corners(info.variant)
        ).miou()
    record = {
        "heldout_miou": round(miou, 2),
        "split": "heldout",
        "held_out": list(CAMVID_HELDOUT_SEQUENCES),
        "recipe": recipe or info.extra.get("recipe") or known_recipe,
        "iteration": info.extra.get("iteration"),
    }
    curve = info.extra.get("curve")
    rule = plateau_rule(record["recipe"])
    if curve:
        record["curve"] = curve
    gain = window_gain([{"iteration": i, "val_miou": v} for i, v in curve or []], rule[0]) if rule else None
    if gain is not None:
        record["plateau"] = {"window": rule[0], "gain": round(gain, 2), "min_gain": rule[1], "flat": gain < rule[1]}
    return record


def plateau_rule(recipe: Optional[str]) -> Optional[tuple[int, float]]:
    """The window and least gain a recipe calls its curve flat by (`run.plateau_window`,
    `run.plateau_gain`); None where it sets no window, or is not in the repository."""
    from bevanet_core.training.config import load_config

    path = REPO / str(recipe or "")
    run = load_config(str(path), []).run if recipe and path.is_file() else None
    return (run.plateau_window, run.plateau_gain) if run and run.plateau_window else None


def refresh_proxy(out: Path, proxy: Path, data: Path, recipe: Optional[str] = None) -> int:
    """Rewrites the `proxy` record of the model at `out` from the held-out run at `proxy`; the tensors
    and every other record are kept byte for byte."""
    from bevanet_core.evaluation.calibration import write_safetensors_metadata

    _, info = read_checkpoint(out)
    if info is None or not (REPO / str(info.extra.get("recipe", ""))).is_file():
        print(f"{out}: no recipe in its metadata, so no held-out twin to measure", file=sys.stderr)
        return 2
    if not trains_on_val(REPO / info.extra["recipe"], data):
        print(f"{out}: its recipe does not train on val, whose figure is its honest one; no proxy", file=sys.stderr)
        return 2
    before = info.extra.get("proxy")
    # a run or weights file that does not name its recipe: the one the record named before
    after = info.extra["proxy"] = proxy_figure(proxy, data, recipe, (before or {}).get("recipe"))
    write_safetensors_metadata(out, info)
    was = f"{before['heldout_miou']:.2f} at iteration {before.get('iteration')}" if before else "none"
    print(f"proxy of {out.name}: {after['heldout_miou']:.2f} at iteration {after['iteration']} (was {was})")
    if "plateau" in after:
        print(plateau_sentence(after["plateau"]))
    return 0


def plateau_sentence(plateau: dict) -> str:
    verdict = (
        "flat: the recipe has stopped paying"
        if plateau["flat"]
        else f"still rising (flat under {plateau['min_gain']:g})"
    )
    return f"its validated curve rose {plateau['gain']:+.2f} over the last {plateau['window']} iterations: {verdict}"


def weights_of_training_checkpoint(path: Path, out: Path) -> Path:
    """A training checkpoint (RUN_DIR/last.pt) as a weights file: its average of the weights where the
    run keeps one, else its weights, with the iteration it was taken at."""
    from bevanet_core.checkpoint import ModelInfo
    from bevanet_core.models import build_model
    from bevanet_core.training.checkpointing import load_training_checkpoint

    ckpt = load_training_checkpoint(path)
    info = ModelInfo.from_json(ckpt["model_info"])
    curve = [[h["iteration"], round(h["val_miou"], 2)] for h in ckpt.get("history", []) if "val_miou" in h]
    info.extra = {**{k: v for k, v in info.extra.items() if k != "val_miou"}, "iteration": ckpt["iteration"]}
    if curve:
        info.extra["curve"] = curve  # the mIoU validated on the way, [iteration, mIoU] pairs
    model = build_model(info.variant, info.num_classes, aux_heads=True)
    model.load_state_dict(ckpt["ema"]["model"] if "ema" in ckpt else ckpt["model"])
    save_weights(model, out, info)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "run",
        type=Path,
        nargs="?",
        help="a run directory (its best.safetensors), a weights file, or a training "
        "checkpoint (RUN_DIR/last.pt: its average of the weights)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--recipe", help="the recipe the run followed (default: training/<run name>.yaml)")
    p.add_argument("--input-size", default="480x360", help="network input WxH the model was trained at")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    p.add_argument("--force", action="store_true", help="ship even if it does not score higher")
    p.add_argument("--logs", type=Path, default=REPO / "training" / "logs", help="where the run's logs are copied")
    p.add_argument("--name", help="the run's name in the metadata and under --logs (default: its folder's name)")
    p.add_argument(
        "--proxy",
        type=Path,
        help="for a recipe that trains on val: the held-out run of the same recipe (its directory, "
        "last.pt or weights), whose figure on the drive it never saw is stored with the model",
    )
    p.add_argument(
        "--proxy-only",
        action="store_true",
        help="rewrite only the --proxy figure of the model at --out (no RUN; its tensors and other records kept)",
    )
    p.add_argument("--proxy-recipe", help="the recipe the --proxy run followed (default: from its metadata)")
    p.add_argument(
        "--val-slack",
        type=float,
        default=1.0,
        help="for a recipe that trains on val: how far below the shipped model on val it may score and still ship",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.proxy_only:
        if args.proxy is None or args.run is not None:
            p.error("--proxy-only takes --proxy RUN and no run to ship")
        return refresh_proxy(args.out, args.proxy, args.data, args.proxy_recipe)
    if args.run is None:
        p.error("the run to ship is required (a run directory, weights file or RUN_DIR/last.pt)")
    weights = args.run if args.run.is_file() else args.run / "best.safetensors"
    args.run_dir = weights.parent
    name = args.name or args.run_dir.name
    if weights.suffix == ".pt":  # through a weights file, so that it loads as any shipped file does
        with tempfile.TemporaryDirectory() as tmp:
            model, info = load_model(weights_of_training_checkpoint(weights, Path(tmp) / "last.safetensors"))
    else:
        model, info = load_model(weights)  # inference model: aux heads skipped
    info.input_size = tuple(int(v) for v in args.input_size.split("x"))
    recipe = args.recipe or info.extra.get("recipe") or f"training/{name}.yaml"
    on_val = (REPO / recipe).is_file() and trains_on_val(REPO / recipe, args.data)
    info.extra = {
        "trained_by": info.extra.get("trained_by", "bevanet-train"),
        "run": name,
        "recipe": recipe,
        **{
            k: info.extra[k]
            for k in ("iteration", "device", "batch", "minutes", "trial_overrides", "trial_seed")
            if k in info.extra
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / args.out.name
        save_weights(model, candidate, info, dtype=torch.float16)
        new = val_miou(candidate, args.data)
        old = val_miou(args.out, args.data) if args.out.is_file() else float("-inf")
        print(
            f"candidate {name} (iteration {info.extra.get('iteration', '?')}): val mIoU {new:.2f}; "
            f"shipped {args.out.name}: {old:.2f}"
        )
        if on_val:
            print(f"{recipe} trains on val's frames: val only shows that training ran")
            if new < old - args.val_slack and not args.force:
                print(f"not shipped: more than {args.val_slack} below the shipped model on val, frames it trained on")
                return 1
            if args.proxy is not None:
                info.extra["proxy"] = proxy_figure(args.proxy, args.data, args.proxy_recipe)
                proxy = info.extra["proxy"]
                print(f"proxy: {proxy['heldout_miou']:.2f} on {', '.join(proxy['held_out'])}, held out ({proxy})")
                if "plateau" in proxy:
                    print(plateau_sentence(proxy["plateau"]))
        elif new <= old and not args.force:
            print("not shipped: the shipped model scores as high or higher")
            return 1
        info.extra["val_miou"] = round(new, 2)
        replaced = read_checkpoint(args.out)[1] if args.out.is_file() else None
        save_weights(model, args.out, info, dtype=torch.float16)
    if replaced is not None and CALIBRATION_KEY in (replaced.extra or {}):
        print(
            f"the model replaced was calibrated; {args.out.name} is not yet: fit its calibration with "
            "bevanet-calibrate (docs/training.md, 'Calibrated confidence')"
        )
    logs = args.logs / name
    logs.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "train.log.jsonl", "console.log"):
        if (args.run_dir / name).is_file():
            shutil.copy(args.run_dir / name, logs / name)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, fp16, val mIoU {new:.2f}) and {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
