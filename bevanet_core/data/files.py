"""Reading a dataset's files, checked: images as RGB, index or colour-coded labels of any integer
bit depth, `image [label]` list files. A missing file, an undecodable one or a label value that no
class id can be raises `DatasetError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..imaging.policy import ImageDecodeError, read_image_file


class DatasetError(ValueError):
    """Bad data on disk; the message names the file."""


def read_image(path: Path) -> np.ndarray:
    """Any image file -> HxWx3 uint8 RGB."""
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}")
    try:
        image = read_image_file(path, cv2.IMREAD_COLOR)
    except ImageDecodeError as err:
        raise DatasetError(f"cannot decode image: {err}") from None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: Path, color: bool = False) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"label file not found: {path}")
    try:
        label = read_image_file(path, cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED)
    except ImageDecodeError as err:
        raise DatasetError(f"cannot decode label: {err}") from None
    if color:
        return cv2.cvtColor(label, cv2.COLOR_BGR2RGB)
    if label.ndim != 2:
        raise DatasetError(f"label must be a single-channel index image, got shape {label.shape}: {path}")
    return label_as_uint8(label, path)


def label_as_uint8(label: np.ndarray, path: Path) -> np.ndarray:
    """A label of any integer bit depth (8- or 16-bit PNGs) as uint8 when every value fits the
    8-bit range the class ids and the 255 ignore value live in; otherwise `DatasetError` naming
    the file (a float label, or values such as a 16-bit 1000 that no class id can be)."""
    if label.dtype == np.uint8:
        return label
    if not np.issubdtype(label.dtype, np.integer):
        raise DatasetError(f"label must hold integer class ids, got {label.dtype} values: {path}")
    low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
    if low < 0 or high > 255:
        raise DatasetError(
            f"{label.dtype.itemsize * 8}-bit label holds values from {low} to {high}, outside the class ids "
            f"0..254 and 255 = ignore: {path}"
        )
    return label.astype(np.uint8)


def dataset_error_message(exc: BaseException) -> str:
    """The one line of a `DatasetError`, also when a DataLoader worker raised it (the loader
    re-raises it with the worker's whole traceback as its message)."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split("DatasetError: ", 1)[-1]
    return text


def read_pair_list(root: Path, list_file: Path) -> list[tuple[Path, Optional[Path]]]:
    """`image label` (or just `image` for test sets) per line, paths relative to root."""
    if not list_file.is_file():
        raise DatasetError(f"list file not found: {list_file}")
    pairs = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise DatasetError(f"{list_file}:{lineno}: expected 'image [label]', got {line!r}")
        pairs.append((root / parts[0], root / parts[1] if len(parts) == 2 else None))
    if not pairs:
        raise DatasetError(f"list file has no entries: {list_file}")
    return pairs
