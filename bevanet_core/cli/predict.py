"""bevanet-predict: segment an image, a folder of images or a video; write label masks,
colour masks and overlays."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from ..imaging.policy import ImageDecodeError, check_pixels, image_file_size, read_image_file
from ..paths import OutputWriteError, unique_output_names, write_image
from .args import add, make_parser
from .common import add_model_args, add_tta_args, apply_input_policy, build_segmenter, extras_guard, with_tta
from .validate import check_output_dir, float_range

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def iter_images(path: Path) -> Iterator[tuple[str, Union[np.ndarray, ImageDecodeError]]]:
    """(name, RGB uint8 frame, or the ImageDecodeError saying why not) for an image file or a
    folder, in name order. Every file passes the input policy (pixel cap from the header). The
    names are unique (`paths.unique_output_names`: `frame.png` and `frame.jpg` -> `frame_png`,
    `frame_jpg`); ValueError, before any frame, when two files cannot be told apart."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    names = unique_output_names(files)
    return _read_images(files, names)


def _read_images(files: list[Path], names: list[str]) -> Iterator[tuple[str, Union[np.ndarray, ImageDecodeError]]]:
    for f, name in zip(files, names, strict=True):
        try:
            bgr = read_image_file(f, cv2.IMREAD_COLOR)
        except ImageDecodeError as err:
            yield name, err
            continue
        yield name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_video(path: Path):
    """An opened cv2.VideoCapture whose frames pass the pixel cap; ValueError otherwise."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"cannot open video {path} (not a video OpenCV can decode)")
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        check_pixels(width, height, f"video {path}: frames of")
    except ImageDecodeError:
        cap.release()
        raise
    return cap


def iter_video(cap, path: Path) -> Iterator[tuple[str, Optional[np.ndarray]]]:
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield f"{path.stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def video_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    return fps


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-predict", __doc__.strip())
    p.add_argument("input", help="an image, a folder of images, or a video file")
    add(p, "out", default=Path("outputs/predict"))
    add_model_args(p)
    add_tta_args(p)
    p.add_argument("--alpha", type=float_range(0.0, 1.0), default=0.5, help="overlay opacity in [0, 1]")
    add(p, "max_frames")
    p.add_argument("--no-frames", action="store_true", help="video: write only the overlay/colour videos")
    return p


@extras_guard("bevanet-predict")
def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    src = Path(args.input)
    if not src.exists():
        print(f"bevanet-predict: error: input not found: {src}", file=sys.stderr)
        return 2
    check_output_dir(p, "--out", args.out, [src])
    apply_input_policy(args)
    is_video = src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES
    try:
        if is_video:
            cap = open_video(src)
            frames = iter_video(cap, src)
        else:
            if src.is_file():  # one image: refused on its header before the model is loaded
                w, h = image_file_size(src)
                check_pixels(w, h, f"{src}:")
            frames = iter_images(src)
        seg = with_tta(args, build_segmenter(args))
    except ValueError as exc:  # CheckpointError and ImageDecodeError are ValueErrors
        print(f"bevanet-predict: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        for sub in ("masks", "color", "overlay"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"bevanet-predict: error: cannot create {exc.filename or out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    writers = {}
    latencies = []
    failed = None
    try:
        done, skipped = _segment_all(args, src, out, seg, frames, is_video, writers, latencies)
    except OutputWriteError as exc:  # a full disk: named, and what was written so far is reported
        failed, (done, skipped) = exc, exc.progress
    for w in writers.values():
        w.release()
    if failed is not None:
        print(f"bevanet-predict: error: {failed}", file=sys.stderr)
    elif done == 0:
        print(f"bevanet-predict: error: no readable images in {src}", file=sys.stderr)
        return 2
    median = float(np.median(latencies)) if latencies else float("nan")
    print(
        f"segmented {done} frame(s) ({skipped} unreadable skipped)"
        + (" before the failed write" if failed is not None else "")
        + f", median {median:.1f} ms/frame "
        f"({_describe(getattr(seg, 'segmenter', seg).pipeline)})"
    )
    print(f"label masks (class ids, 255 = unlabeled): {out / 'masks'}")
    print(f"colour masks: {out / 'color'}   overlays: {out / 'overlay'}")
    for kind, _ in writers.items():
        print(f"{kind} video: {out / f'{src.stem}_{kind}.mp4'}")
    return 1 if failed is not None else 0


def _describe(pipeline: dict) -> str:
    w, h = pipeline["input_size"]
    threads = pipeline["threads"] or "default"
    return (
        f"{pipeline['backend']} {pipeline['precision']}, {pipeline['device']}, {threads} thread(s), "
        f"{pipeline['variant']}, input {w}x{h}"
    )


def _segment_all(args, src: Path, out: Path, seg, frames, is_video: bool, writers: dict, latencies: list):
    """Segments and writes every frame; (frames done, unreadable skipped). A write that fails
    raises OutputWriteError carrying those counts as `progress`."""
    done = skipped = 0
    for name, rgb in frames:
        if args.max_frames is not None and done >= args.max_frames:
            break
        if isinstance(rgb, ImageDecodeError):
            print(f"  skipped ({rgb.kind}): {rgb}", file=sys.stderr)
            skipped += 1
            continue
        t0 = time.perf_counter()
        res = seg.segment(rgb, "rgb8", color=True)
        latencies.append((time.perf_counter() - t0) * 1e3)
        overlay = seg.overlay(rgb, res.mask, args.alpha)
        if is_video:
            for kind, img in (("overlay", overlay), ("color", res.color)):
                if kind not in writers:
                    h, w = img.shape[:2]
                    path = out / f"{src.stem}_{kind}.mp4"
                    writers[kind] = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video_fps(src), (w, h))
                    if not writers[kind].isOpened():
                        writers.pop(kind)
                        err = OutputWriteError(f"cannot write {path}: OpenCV cannot open a video writer for it")
                        err.progress = (done, skipped)
                        raise err
                writers[kind].write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not (is_video and args.no_frames):
            try:
                write_image(out / "masks" / f"{name}.png", res.mask)
                write_image(out / "color" / f"{name}.png", cv2.cvtColor(res.color, cv2.COLOR_RGB2BGR))
                write_image(out / "overlay" / f"{name}.png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            except OutputWriteError as err:
                err.progress = (done, skipped)
                raise
        done += 1
    return done, skipped


if __name__ == "__main__":
    sys.exit(main())
