"""Frame sources for recording bags: an image folder, a video file or a dataset list.

Every source yields `Frame`s lazily (HxWx3 uint8 RGB, optional HxW uint8 label) so that long
videos never sit in memory. Label convention on the label topic: class ids 0..N-1 and 255 for
"ignore", the convention of the node's mask output and of `bevanet_core.data`. A dataset split
(`--dataset camvid`) is read through `bevanet_core.data.build_dataset`, so its labels are mapped
exactly as training and `bevanet-eval` map them (CamVid void 11 -> 255); a plain label folder
is stored as it is unless `void` names an id to map to 255.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import options
from ..imaging.policy import ImageDecodeError, check_pixels, read_image_file
from .writer import Frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
IGNORE = 255
LIST_DATASETS = ("camvid", "cityscapes")  # datasets that build_dataset reads from a list file


class SourceError(ValueError):
    """An input folder, video or list file is missing, empty or inconsistent."""


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'WxH' -> (W, H); None passes through."""
    if text is None:
        return None
    try:
        return options.parse_size(text, "size")
    except ValueError as exc:
        raise SourceError(str(exc)) from None


def _resize(rgb: np.ndarray, label: np.ndarray | None, size: tuple[int, int] | None):
    if size is None or (rgb.shape[1], rgb.shape[0]) == size:
        return rgb, label
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if label is not None:
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    return rgb, label


def read_rgb(path: Path) -> np.ndarray:
    """Any image file -> HxWx3 uint8 RGB (grey images are replicated to three channels)."""
    try:
        img = read_image_file(path, cv2.IMREAD_UNCHANGED)
    except ImageDecodeError as err:
        raise SourceError(f"could not read image: {err}") from None
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def read_label(path: Path, void: int | None = None) -> np.ndarray:
    """A single-channel 8-bit label PNG -> HxW uint8 class ids, with `void` mapped to 255."""
    try:
        img = read_image_file(path, cv2.IMREAD_UNCHANGED)
    except ImageDecodeError as err:
        raise SourceError(f"could not read label: {err}") from None
    if img.ndim == 3:
        raise SourceError(
            f"label {path} is a colour image; store class-id PNGs (one channel), or "
            "record a dataset split with --dataset so its own label mapping is used"
        )
    if img.dtype != np.uint8:
        raise SourceError(f"label {path} is {img.dtype}; expected 8-bit class ids")
    if void is not None:
        img = img.copy()
        img[img == void] = IGNORE
    return img


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in file-name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _match_labels(images: list[Path], labels_dir: Path) -> dict[Path, Path]:
    """Label file for each image: same file name, else same stem with any image suffix."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise SourceError(f"label folder {labels_dir} does not exist")
    by_stem = {p.stem: p for p in labels_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    matched, missing = {}, []
    for img in images:
        exact = labels_dir / img.name
        hit = exact if exact.exists() else by_stem.get(img.stem)
        if hit is None:
            missing.append(img.name)
        else:
            matched[img] = hit
    if missing:
        raise SourceError(
            f"{len(missing)} image(s) have no label of the same name in {labels_dir}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return matched


def folder_frames(
    images: Path,
    labels: Path | None = None,
    size: tuple[int, int] | None = None,
    every: int = 1,
    max_frames: int | None = None,
    void: int | None = None,
) -> Iterator[Frame]:
    """Frames from an image folder (file-name order), labels matched by file name."""
    files = list_images(images)[:: max(1, every)][:max_frames]
    matched = _match_labels(files, labels) if labels is not None else {}
    for path in files:
        label = read_label(matched[path], void) if path in matched else None
        rgb = read_rgb(path)
        if label is not None and label.shape != rgb.shape[:2]:
            raise SourceError(
                f"label {matched[path]} is {label.shape[1]}x{label.shape[0]} but image "
                f"{path} is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        rgb, label = _resize(rgb, label, size)
        yield Frame(rgb=rgb, label=label, name=path.name)


def list_frames(
    root: Path,
    list_file: Path,
    dataset: str = "camvid",
    size: tuple[int, int] | None = None,
    every: int = 1,
    max_frames: int | None = None,
) -> Iterator[Frame]:
    """Frames of a dataset split in list order, labels mapped by the dataset's own loader."""
    from bevanet_core.data.datasets import build_dataset

    if dataset not in LIST_DATASETS:
        raise SourceError(f"--dataset must be one of {LIST_DATASETS} (read from a list file), got {dataset!r}")
    root, list_file = Path(root), Path(list_file)
    if not list_file.is_file() and (root / list_file).is_file():
        list_file = root / list_file
    if not list_file.is_file():
        raise SourceError(f"list file {list_file} does not exist")
    try:
        data = build_dataset(dataset, root, list_file)
    except (ValueError, OSError) as err:
        raise SourceError(f"cannot read {dataset} list {list_file}: {err}") from None
    for i in range(0, len(data), max(1, every)):
        if max_frames is not None and i // max(1, every) >= max_frames:
            break
        image_path, label_path = data.pairs[i]
        try:
            rgb, label = data.load(i)
        except (ValueError, OSError) as err:
            raise SourceError(f"{list_file} entry {i + 1}: {err}") from None
        rgb, label = _resize(rgb, label if label_path is not None else None, size)
        yield Frame(rgb=np.ascontiguousarray(rgb), label=label, name=Path(image_path).name)


def video_frames(
    path: Path, size: tuple[int, int] | None = None, every: int = 1, max_frames: int | None = None
) -> Iterator[Frame]:
    """Frames of a video file (every `every`-th frame), decoded with OpenCV."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"video {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"OpenCV could not open video {path}")
    try:
        check_video_size(cap, path)
        index = kept = 0
        while max_frames is None or kept < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % max(1, every) == 0:
                rgb, _ = _resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, size)
                yield Frame(rgb=rgb, name=f"{path.name}#{index}")
                kept += 1
            index += 1
        if index == 0:
            raise SourceError(f"video {path} has no decodable frames")
    finally:
        cap.release()


def check_video_size(cap: Any, path: Path) -> None:
    """Refuses a video whose frames exceed the pixel cap, before the first frame is decoded."""
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    try:
        check_pixels(width, height, f"video {path}: frames of")
    except ImageDecodeError as err:
        raise SourceError(str(err)) from None


def video_fps(path: Path) -> float | None:
    """Frame rate stored in a video file, if any."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(fps) if fps and fps > 0 else None
