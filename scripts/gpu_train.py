"""Trains the shipped model's recipe on a GPU for a given number of minutes.

On a lent NVIDIA machine (no internet, no ../shared, a few minutes, 64 MiB carried), after
`python scripts/pack_camvid.py` here has written the JPEG-95 copy of CamVid to .gpu_data/:

    python3 scripts/gpu_train.py --minutes 7 --data .gpu_data/camvid --out "$OUT"

and back here, with the files it wrote:

    python scripts/gpu_train.py --join DIR      # DIR/bevanet_s_camvid.safetensors from its parts

It continues the committed default weights with the long recipe
(training/bevanet-s_camvid-480x360-long.yaml), scaled to the GPU: batch 32 (learning rate scaled
by the square root of the batch ratio), channels-last, bf16 where the GPU has it (precision
auto), 8 data workers, and a schedule that runs out with the time budget
(`run.time_budget_min`). Validation on all of CamVid val picks the best average of the weights.
Into --out it writes: the fp16 weights in two parts below the device tool's 16 MiB per file,
with their sha256; `result.json` and `report.md` (val mIoU, per-class IoU, iterations, minutes,
device); `train.log.jsonl` and `config.yaml`. The full run directory stays outside --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from the carried tree, without installing the package

RECIPE = REPO / "training" / "bevanet-s_camvid-480x360-long.yaml"
WEIGHTS_NAME = "bevanet_s_camvid.safetensors"
PART_BYTES = 15 * 2**20  # under the 16 MiB a file the device tool brings back


def split(path: Path, out_dir: Path) -> dict:
    data = path.read_bytes()
    parts = []
    for i in range(math.ceil(len(data) / PART_BYTES)):
        name = f"{path.name}.part{i}"
        (out_dir / name).write_bytes(data[i * PART_BYTES : (i + 1) * PART_BYTES])
        parts.append(name)
    return {"parts": parts, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def join(directory: Path) -> Path:
    """Reassembles DIR/<weights> from its parts, checking the recorded sha256."""
    result = json.loads((directory / "result.json").read_text())
    weights = result["weights"]
    data = b"".join((directory / name).read_bytes() for name in weights["parts"])
    if hashlib.sha256(data).hexdigest() != weights["sha256"]:
        raise SystemExit(
            f"the parts in {directory} do not add up to the weights that were written "
            f"(sha256 mismatch, {len(data)} of {weights['bytes']} bytes)"
        )
    out = directory / WEIGHTS_NAME
    out.write_bytes(data)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument(
        "--minutes",
        type=float,
        help="training budget (the whole command adds start-up and validation: leave a minute or two of the 10)",
    )
    p.add_argument("--data", type=Path, default=REPO / ".gpu_data" / "camvid")
    p.add_argument("--out", type=Path)
    p.add_argument("--join", type=Path, metavar="DIR", help="reassemble the weights written into DIR")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, help="default: the recipe's, times sqrt(batch / recipe batch)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--crop", default="480x360", help="training crop WxH")
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--init", default="shipped", help="'shipped' (the committed weights), 'none', or a file")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args(argv)
    if args.join:
        print(f"wrote {join(args.join)}")
        return 0
    if args.minutes is None or args.out is None:
        p.error("--minutes and --out are needed to train (or --join DIR)")
    if not (args.data / "train.lst").is_file():
        p.error(f"no packed CamVid at {args.data} (train.lst missing): run scripts/pack_camvid.py first")

    import torch

    from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model, save_weights
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training.build import build_datasets, resolve_device
    from bevanet_core.training.config import load_config
    from bevanet_core.training.engine import train
    from bevanet_core.training.validation import evaluate

    recipe = load_config(str(RECIPE))
    lr = args.lr or recipe.optim.lr * math.sqrt(args.batch / recipe.optim.batch_size)
    width, height = (int(v) for v in args.crop.lower().split("x"))
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    overrides = [
        f"data.root={args.data.resolve()}",
        f"data.workers={args.workers}",
        f"data.base_size={width}",
        f"data.crop_size=[{width},{height}]",
        f"optim.batch_size={args.batch}",
        f"optim.lr={lr}",
        "optim.iterations=1000000",
        f"run.time_budget_min={args.minutes}",
        f"run.out_dir={run_dir}",
        f"run.device={args.device}",
        f"run.channels_last={'true' if device.type == 'cuda' else 'false'}",
        f"run.threads={4 if device.type == 'cuda' else 1}",
        f"run.val_every={args.val_every}",
        "run.checkpoint_every=0",
        "run.log_every=20",
        "run.start_iteration=0",
    ]
    if args.init == "shipped":
        overrides.append(f"model.pretrained={DEFAULT_WEIGHTS}")
    elif args.init != "none":
        overrides.append(f"model.pretrained={args.init}")
    cfg = load_config(str(RECIPE), overrides + list(args.overrides))
    t0 = time.time()
    result = train(cfg)
    minutes = (time.time() - t0) / 60

    model, info = load_model(run_dir / "best.safetensors", device=device)
    info.input_size = (480, 360)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    info.extra = {
        **info.extra,
        "trained_by": "scripts/gpu_train.py",
        "recipe": f"training/{RECIPE.name}",
        "device": where,
        "batch": args.batch,
        "lr": lr,
        "minutes": round(args.minutes, 2),
    }
    weights = run_dir / WEIGHTS_NAME
    save_weights(model, weights, info, dtype=torch.float16)
    fp16_model, _ = load_model(weights, device=device)  # what a user gets, evaluated in fp32
    _, val_set = build_datasets(cfg)
    cm = evaluate(
        fp16_model, val_set, device, cfg.model.num_classes, align_corners=logits_align_corners(cfg.model.variant)
    )
    per_class = {
        name: (None if math.isnan(v) else round(100.0 * float(v), 2))
        for name, v in zip(info.class_names, cm.iou(), strict=True)
    }
    report = {
        "val_miou": round(cm.miou(), 2),
        "per_class_iou": per_class,
        "best_during_training": round(result["best_miou"], 2),
        "iterations": result["iteration"],
        "best_iteration": info.extra.get("iteration"),
        "minutes_total": round(minutes, 2),
        "budget_minutes": args.minutes,
        "device": where,
        "batch": args.batch,
        "lr": lr,
        "crop": [width, height],
        "precision": cfg.run.precision,
        "val_images": len(val_set),
        "weights": split(weights, args.out),
    }
    (args.out / "result.json").write_text(json.dumps(report, indent=2))
    for name in ("train.log.jsonl", "config.yaml"):
        shutil.copy(run_dir / name, args.out / name)
    rows = "\n".join(f"| {k} | {'-' if v is None else f'{v:.2f}'} |" for k, v in per_class.items())
    (args.out / "report.md").write_text(
        f"BEVANet-S, {result['iteration']} iterations of batch {args.batch} in {minutes:.1f} min on {where} "
        f"({cfg.run.precision}); CamVid val ({len(val_set)} images, 480x360, fp16 weights, fp32 inference): "
        f"mIoU {cm.miou():.2f}\n\n| class | IoU |\n| --- | ---: |\n{rows}\n"
    )
    print(json.dumps({k: v for k, v in report.items() if k != "weights"}))
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
