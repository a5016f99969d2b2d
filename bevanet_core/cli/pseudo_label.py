"""bevanet-pseudo-label: label unlabelled footage with a teacher model, keeping only the pixels it is
sure of, for self-training (`data.extra_train` in a recipe).

    bevanet-pseudo-label ../shared/data/driving_video/solidWhiteRight.mp4 ../shared/data/kitti_gray_seq \\
        --weights teacher.safetensors --tta --every 5 --threshold 0.9 --out outputs/pseudo

Every input is an image, a folder of images or a video (every `--every`-th frame). The output
folder holds `images/` (the frames as PNG), `labels/` (class ids; 255 where the teacher's
confidence is under `--threshold`, so the loss ignores them), `list.lst` (`image label` pairs,
the format of a recipe's list files) and `pseudo_labels.json` (the teacher, the threshold, and
the share of pixels kept per class). Test-time augmentation (`--tta`) makes a better teacher at
six passes a frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..imaging.policy import ImageDecodeError
from ..paths import atomic_write, write_image
from .args import add, make_parser
from .common import add_model_args, add_tta_args, apply_input_policy, build_segmenter, extras_guard, with_tta
from .predict import VIDEO_SUFFIXES, iter_images, iter_video, open_video
from .validate import check_output_dir, float_range


def frames_of(source: Path, every: int):
    """(name, RGB frame or ImageDecodeError) of an image, a folder of images or a video; names
    carry the source's own name so that several inputs never collide."""
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        for index, (name, frame) in enumerate(iter_video(open_video(source), source)):
            if index % every == 0:
                yield name, frame
        return
    prefix = source.name if source.is_dir() else source.parent.name
    for index, (name, frame) in enumerate(iter_images(source)):
        if index % every == 0:
            yield f"{prefix}_{name}", frame


def pseudo_label(
    segmenter, sources: list[Path], out: Path, threshold: float, every: int = 1, limit: Optional[int] = None
) -> dict:
    """Writes the labelled frames of `sources` under `out`; returns the summary it also writes."""
    names = list(segmenter.info.class_names)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    kept = np.zeros(len(names), np.int64)
    pixels, lines, skipped = 0, [], []
    for source in sources:
        for name, frame in frames_of(source, every):
            if limit is not None and len(lines) >= limit:
                break
            if isinstance(frame, ImageDecodeError):
                skipped.append(f"{name}: {frame}")
                continue
            res = segmenter.segment(frame, "rgb8", confidence=True)
            label = res.mask.copy()
            label[res.confidence < round(threshold * 255)] = 255
            for path, image in (
                (out / "images" / f"{name}.png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)),
                (out / "labels" / f"{name}.png", label),
            ):
                write_image(path, image)
            kept += np.bincount(label[label != 255], minlength=len(names))[: len(names)]
            pixels += label.size
            lines.append(f"images/{name}.png labels/{name}.png")
    if not lines:
        raise ValueError(f"no readable frames in {', '.join(map(str, sources))}")
    # the list last, whole or not at all: a recipe never reads a half-written one
    atomic_write(out / "list.lst", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    summary = {
        "frames": len(lines),
        "teacher": {"variant": segmenter.info.variant, **(segmenter.info.extra or {})},
        "threshold": threshold,
        "sources": [str(s) for s in sources],
        "every": every,
        "kept_share": round(float(kept.sum()) / pixels, 4),
        "kept_share_per_class": {n: round(float(k) / pixels, 5) for n, k in zip(names, kept, strict=True)},
        "skipped": skipped,
    }
    atomic_write(out / "pseudo_labels.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "bevanet-pseudo-label", __doc__.strip().splitlines()[0], epilog="\n".join(__doc__.strip().splitlines()[2:])
    )
    p.add_argument("inputs", nargs="+", help="images, folders of images or videos")
    add(p, "out", required=True, note="images/, labels/, list.lst, pseudo_labels.json")
    p.add_argument(
        "--threshold",
        type=float_range(0.0, 1.0),
        default=0.9,
        help="keep a pixel's label where the teacher's confidence is at least this",
    )
    add(p, "every", note="of each input")
    add(p, "max_frames", note="in all")
    add_model_args(p)
    add_tta_args(p)
    return p


@extras_guard("bevanet-pseudo-label")
def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    sources = [Path(s) for s in args.inputs]
    for source in sources:
        if not source.exists():
            p.error(f"input not found: {source}")
    check_output_dir(p, "--out", args.out, sources)
    apply_input_policy(args)
    try:
        segmenter = with_tta(args, build_segmenter(args))
        summary = pseudo_label(segmenter, sources, Path(args.out), args.threshold, args.every, args.max_frames)
    except (ValueError, OSError) as exc:
        print(f"bevanet-pseudo-label: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{summary['frames']} frames labelled in {args.out}: {100 * summary['kept_share']:.1f}% of the pixels at "
        f"confidence >= {args.threshold} ({len(summary['skipped'])} unreadable skipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
