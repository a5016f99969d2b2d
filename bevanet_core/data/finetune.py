"""Labelled frames of your own (e.g. mined by `bevanet-mine`) plus CamVid, as one training list.

Labels come from a labelling tool as PNGs named like the frames (`<stamp_ns>.png`), in either
of the two forms such tools export:
- class indices: a single-channel PNG whose values are the class ids (255 = not labelled);
- colours: an RGB or palette PNG painted in the class colours of `classes.json` (what
  `bevanet-mine` writes; CVAT's "Segmentation mask" export and Pascal-VOC-style tools write
  this, with the label colours set to those). A colour that is no class's, black included
  unless black is a class colour, becomes 255 (not labelled).

`prepare_finetune` converts every label to a class-index PNG and writes one list file of
absolute `image label` paths: the base data set's list, then each of your frames `repeat`
times (a few dozen frames among hundreds of CamVid ones would otherwise barely count).
`bevanet-train --config training/bevanet-s_camvid-finetune.yaml --set data.train_list=<list>`
trains on it: docs/training.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .datasets import DatasetError, read_pair_list

IGNORE = 255
MIN_LABELLED_SHARE = 0.05  # below this, the colours almost surely do not match classes.json


def read_classes(path: Path) -> tuple[list[str], list[list[int]]]:
    """Names and colours of a classes.json ([{"name", "color"}, ...] in class-id order)."""
    try:
        classes = json.loads(Path(path).read_text())
        return [c["name"] for c in classes], [list(c["color"]) for c in classes]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: expected a JSON list of {{'name', 'color'}} ({exc})") from None


def label_to_index(path: Path, palette: list[list[int]]) -> np.ndarray:
    """A labelling tool's PNG -> H x W uint8 class ids, 255 = not labelled."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "I", "I;16"):
                ids = np.asarray(im).astype(np.int64)
                out = np.where(ids < len(palette), ids, IGNORE).astype(np.uint8)
                return out
            rgb = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable PNG ({exc})") from None
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    out = np.full(code.shape, IGNORE, np.uint8)
    for class_id, (r, g, b) in enumerate(palette):
        out[code == ((r << 16) | (g << 8) | b)] = class_id
    share = float((out != IGNORE).mean())
    if share < MIN_LABELLED_SHARE:
        raise DatasetError(
            f"{path}: only {share:.1%} of the pixels have a class colour of classes.json; paint the labels "
            "in those colours, or export class indices (a single-channel PNG)"
        )
    return out


@dataclass
class FinetuneData:
    list_file: Path
    own_frames: int
    base_frames: int
    repeat: int
    held_out: int = 0
    held_out_file: Optional[Path] = None


def prepare_finetune(
    mined_dir: Path,
    labels_dir: Path,
    out_dir: Path,
    base_root: Optional[Path] = None,
    base_list: Optional[str] = "train.lst",
    repeat: int = 4,
    hold_out: int = 0,
) -> FinetuneData:
    """Converts the labels in `labels_dir` (for the frames in `mined_dir/images`) to class-index
    PNGs under `out_dir/labels` and writes `out_dir/train.lst`: `base_root/base_list`'s pairs
    (absolute paths), then each own frame `repeat` times. `hold_out`: the last that many own
    frames (by name, i.e. by stamp) go to `out_dir/held_out.lst` instead, to calibrate and
    evaluate the fine-tuned model on frames it did not train on."""
    mined_dir, labels_dir, out_dir = Path(mined_dir), Path(labels_dir), Path(out_dir)
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    classes = mined_dir / "classes.json"
    if not classes.is_file():
        raise DatasetError(f"{classes} is missing: the folder bevanet-mine wrote holds it")
    _, palette = read_classes(classes)
    labels = sorted(labels_dir.glob("*.png"))
    if not labels:
        raise DatasetError(f"no label PNGs in {labels_dir}")
    converted = out_dir / "labels"
    converted.mkdir(parents=True, exist_ok=True)
    own = []
    for label in labels:
        image = mined_dir / "images" / label.name
        if not image.is_file():
            raise DatasetError(f"label {label} has no frame {image} (labels are named like the frames)")
        ids = label_to_index(label, palette)
        with Image.open(image) as im:
            size = im.size
        if (ids.shape[1], ids.shape[0]) != size:
            raise DatasetError(f"label {label} is {ids.shape[1]}x{ids.shape[0]} but its frame is {size[0]}x{size[1]}")
        target = converted / label.name
        Image.fromarray(ids, mode="L").save(target)
        own.append((image.resolve(), target.resolve()))
    if not 0 <= hold_out < len(own):
        raise ValueError(
            f"hold_out must leave at least one of the {len(own)} labelled frames to train on, got {hold_out}"
        )
    kept, held = (own[: len(own) - hold_out], own[len(own) - hold_out :]) if hold_out else (own, [])
    held_file = None
    if held:
        held_file = out_dir / "held_out.lst"
        held_file.write_text("".join(f"{image} {label}\n" for image, label in held))
    lines = []
    base = 0
    if base_root is not None and base_list:
        for image, label in read_pair_list(Path(base_root), Path(base_root) / base_list):
            lines.append(f"{image.resolve()} {label.resolve() if label else ''}".strip())
            base += 1
    for _ in range(repeat):
        lines += [f"{image} {label}" for image, label in kept]
    list_file = out_dir / "train.lst"
    list_file.write_text("\n".join(lines) + "\n")
    return FinetuneData(list_file, len(kept), base, repeat, len(held), held_file)
