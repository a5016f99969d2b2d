"""Class names, display palettes and normalisation constants of the supported datasets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IGNORE_INDEX = 255

CAMVID_CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
CAMVID_PALETTE = [
    [128, 128, 128],
    [128, 0, 0],
    [192, 192, 128],
    [128, 64, 128],
    [60, 40, 222],
    [128, 128, 0],
    [192, 128, 128],
    [64, 64, 128],
    [64, 0, 128],
    [64, 64, 0],
    [0, 128, 192],
]
CAMVID_VOID = 11  # index of "void" in the SegNet-style index PNGs

CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]
CITYSCAPES_PALETTE = [
    [128, 64, 128],
    [244, 35, 232],
    [70, 70, 70],
    [102, 102, 156],
    [190, 153, 153],
    [153, 153, 153],
    [250, 170, 30],
    [220, 220, 0],
    [107, 142, 35],
    [152, 251, 152],
    [70, 130, 180],
    [220, 20, 60],
    [255, 0, 0],
    [0, 0, 142],
    [0, 0, 70],
    [0, 60, 100],
    [0, 80, 100],
    [0, 0, 230],
    [119, 11, 32],
]


def default_palette(num_classes: int) -> list:
    """A deterministic, well-spread palette for datasets that ship none (PASCAL VOC bit trick)."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i + 1
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append([r, g, b])
    return palette


def palette_lut(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """256x3 lookup table: class id -> RGB; ids without a colour (255 = unlabeled) are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """HxW uint8 class ids -> HxWx3 uint8 RGB."""
    return palette_lut(palette)[np.asarray(mask, dtype=np.uint8)]


def classes_markdown(
    names: Sequence[str] = tuple(CAMVID_CLASSES), palette: Sequence[Sequence[int]] = tuple(CAMVID_PALETTE)
) -> str:
    """The class/colour table of the README: id (the value in ~/mask), name, RGB and hex of the
    colour in ~/color_mask, ~/overlay and the legends (default: the shipped CamVid model's)."""
    if len(names) != len(palette):
        raise ValueError(f"{len(names)} class names but {len(palette)} colours")
    lines = ["| id | class | colour (RGB) | hex |", "| --- | --- | --- | --- |"]
    for i, (name, (r, g, b)) in enumerate(zip(names, palette, strict=True)):
        lines.append(f"| {i} | {name} | ({r}, {g}, {b}) | `#{r:02x}{g:02x}{b:02x}` |")
    lines.append(f"| {IGNORE_INDEX} | unlabeled | (0, 0, 0) | `#000000` |")
    return "\n".join(lines) + "\n"
