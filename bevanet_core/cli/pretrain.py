"""bevanet-pretrain: ImageNet-style classifier pretraining of the BEVANet backbone."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

from ..data.datasets import DatasetError
from ..training.pretrain import PretrainConfig, pretrain
from .args import add, make_parser
from .common import extras_guard
from .validate import int_range

# PretrainConfig fields named by the tools' shared vocabulary (bevanet_core.cli.args)
SHARED = {"out_dir": "out", "batch_size": "batch", "device": "device", "precision": "precision", "threads": "threads"}
HELP = {
    "out_dir": "the run folder",
    "batch_size": "images per training step",
    "device": "auto: a GPU where there is one, else cpu; or cpu, cuda, cuda:N",
    "precision": "training precision; auto: bf16/fp16 mixed precision where the hardware has it, else fp32",
    "threads": "CPU threads of torch (default: torch's own count)",
    "image_size": "side of the square training crop, pixels",
    "epochs": "passes over the training folder",
    "iterations": "training steps, instead of --epochs (default: from --epochs)",
    "lr": "peak learning rate (SGD)",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "scheduler": "learning-rate schedule: step (x0.1 every 30 epochs) or cosine (with warm-up)",
    "warmup_epochs": "epochs of linear learning-rate warm-up (cosine)",
    "mixup": "mixup alpha (0: off)",
    "cutmix": "cutmix alpha (0: off)",
    "workers": "data loading processes",
    "seed": "random seed of the run",
    "checkpoint_every": "steps between checkpoints (last.pt)",
}


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "bevanet-pretrain",
        __doc__.strip(),
        epilog="The run writes backbone.safetensors: pass it to segmentation training as model.pretrained=<path>.",
    )
    p.add_argument("--train", dest="train_dir", required=True, help="train folder: <class>/<image>")
    p.add_argument("--val", dest="val_dir", help="validation folder, same class names (default: none)")
    add(p, "variant", default="bevanet_cls", choices=["bevanet_cls", "bevanet_s_cls"], help="classifier to train")
    for f in dataclasses.fields(PretrainConfig):
        if f.name in ("train_dir", "val_dir", "variant"):
            continue
        if f.name in SHARED:
            default = Path(f.default) if f.name == "out_dir" else f.default
            own = {"default": default, "help": HELP[f.name]} if f.name != "out_dir" else {"default": default}
            if f.name == "precision":
                own["choices"] = ("auto", "fp32", "fp16", "bf16")
            add(p, SHARED[f.name], note=HELP[f.name] if f.name == "out_dir" else "", **own)
            continue
        kind = {int: int, float: float, str: str}.get(type(f.default), str)
        if f.name == "iterations":
            kind = int_range(1)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default, help=HELP[f.name])
    add(p, "resume")
    return p


@extras_guard("bevanet-pretrain")
def main(argv: Optional[list[str]] = None) -> int:
    args = vars(build_parser().parse_args(argv))
    resume = args.pop("resume")
    for field, dest in SHARED.items():
        args[field] = args.pop(dest)
    args["out_dir"] = str(args["out_dir"])
    try:
        result = pretrain(PretrainConfig(**args), resume=resume)
    except (DatasetError, ValueError) as exc:
        print(f"bevanet-pretrain: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
