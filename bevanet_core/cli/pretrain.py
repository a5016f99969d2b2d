"""bevanet-pretrain: ImageNet-style classifier pretraining of the BEVANet backbone."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Optional

from ..data.datasets import DatasetError
from ..training.pretrain import PretrainConfig, pretrain
from .common import extras_guard


@extras_guard("bevanet-pretrain")
def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.strip(),
        epilog="The run writes backbone.safetensors: pass it to segmentation training as model.pretrained=<path>.",
    )
    p.add_argument("--train", dest="train_dir", required=True, help="train folder: <class>/<image>")
    p.add_argument("--val", dest="val_dir", help="validation folder, same class names")
    p.add_argument("--variant", default="bevanet_cls", choices=["bevanet_cls", "bevanet_s_cls"])
    for f in dataclasses.fields(PretrainConfig):
        if f.name in ("train_dir", "val_dir", "variant"):
            continue
        kind = {int: int, float: float, str: str}.get(type(f.default), str)
        p.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default, help=f"default {f.default}"
        )
    p.add_argument("--resume", nargs="?", const="auto", default=None, help="resume (default <out-dir>/last.pt)")
    args = vars(p.parse_args(argv))
    resume = args.pop("resume")
    if args.get("iterations") in ("None", None):
        args["iterations"] = None
    else:
        args["iterations"] = int(args["iterations"])
    if args.get("threads") in ("None", None):
        args["threads"] = None
    else:
        args["threads"] = int(args["threads"])
    try:
        result = pretrain(PretrainConfig(**args), resume=resume)
    except (DatasetError, ValueError) as exc:
        print(f"bevanet-pretrain: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
