"""Segmentation and classification datasets: CamVid (index or RGB colour-coded labels),
Cityscapes, ADE20K, a generic custom folder, and an ImageNet-style class folder.

Every dataset yields (image HxWx3 uint8 RGB, label HxW uint8 with 255 = ignore) before
transforms, and checks what it reads: a missing file, an image/label size mismatch or a label
value outside the class set raises `DatasetError` naming the file. Reading the files is
`files.py`; CamVid's split-by-drive tables are `camvid_splits.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
from torch.utils.data import Dataset

from .camvid_splits import camvid_split_pairs
from .classes import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CAMVID_VOID,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
    default_palette,
)
from .files import DatasetError, read_image, read_label, read_pair_list


class SegmentationDataset(Dataset):
    """Base: a list of (image, label) paths and a label mapping to train ids (255 = ignore)."""

    name = "custom"
    class_names: Sequence[str] = ()
    palette: Sequence[Sequence[int]] = ()

    def __init__(self, pairs: list[tuple[Path, Optional[Path]]], transform: Optional[Callable] = None, seed: int = 0):
        self.pairs = pairs
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return raw

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        if label_path is None:
            return image, np.full(image.shape[:2], IGNORE_INDEX, np.uint8)
        label = self.map_label(self.read_raw_label(label_path), label_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]}"
            )
        bad = np.setdiff1d(np.unique(label), np.r_[np.arange(self.num_classes), IGNORE_INDEX])
        if bad.size:
            raise DatasetError(
                f"label values {bad.tolist()} outside the {self.num_classes} classes "
                f"(and {IGNORE_INDEX} = ignore) in {label_path}"
            )
        return image, label

    def read_raw_label(self, path: Path) -> np.ndarray:
        return read_label(path)

    def __getitem__(self, item):
        # the sampler passes (index, augmentation seed); plain ints work too (seeded by index)
        index, aug_seed = item if isinstance(item, tuple) else (item, (self.seed, self.epoch, item))
        image, label = self.load(index)
        if self.transform is None:
            return image, label
        return self.transform(image, label, np.random.default_rng(aug_seed))


class CamVid(SegmentationDataset):
    """CamVid, 11 classes. `encoding='index'`: SegNet index PNGs (0..10, 11 void -> 255);
    `encoding='rgb'`: the 960x720 colour-coded copy (official CamVid colours, unknown -> 255)."""

    name = "camvid"
    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    # official CamVid colours of the 11 classes, in CAMVID_CLASSES order
    RGB_CODES = [
        [128, 128, 128],
        [128, 0, 0],
        [192, 192, 128],
        [128, 64, 128],
        [0, 0, 192],
        [128, 128, 0],
        [192, 128, 128],
        [64, 64, 128],
        [64, 0, 128],
        [64, 64, 0],
        [0, 128, 192],
    ]

    def __init__(
        self, root, list_file=None, transform=None, encoding: str = "index", seed: int = 0, split: str = "train"
    ):
        if encoding not in ("index", "rgb"):
            raise ValueError(f"CamVid encoding must be 'index' or 'rgb', got {encoding!r}")
        self.encoding = encoding
        self.split = split if list_file is None else Path(list_file).stem
        pairs = (
            camvid_split_pairs(Path(root), split) if list_file is None else read_pair_list(Path(root), Path(list_file))
        )
        super().__init__(pairs, transform, seed)

    def read_raw_label(self, path: Path) -> np.ndarray:
        return read_label(path, color=self.encoding == "rgb")

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if self.encoding == "index":
            label = raw.copy()
            label[label == CAMVID_VOID] = IGNORE_INDEX
            return label
        code = (raw[..., 0].astype(np.int32) << 16) | (raw[..., 1].astype(np.int32) << 8) | raw[..., 2]
        label = np.full(raw.shape[:2], IGNORE_INDEX, np.uint8)
        for cls, (r, g, b) in enumerate(self.RGB_CODES):
            label[code == ((r << 16) | (g << 8) | b)] = cls
        return label


# Cityscapes labelId -> trainId (everything else ignored)
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def cityscapes_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        lut[label_id] = train_id
    return lut


def cityscapes_trainid_to_labelid(train_ids: np.ndarray) -> np.ndarray:
    """For the official test server: trainId predictions back to labelIds (255 -> 0 unlabeled)."""
    inverse = np.zeros(256, np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        inverse[train_id] = label_id
    return inverse[train_ids]


class Cityscapes(SegmentationDataset):
    """Official layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/<split>/<city>/*_gtFine_labelIds.png."""

    name = "cityscapes"
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root, split: str = "train", transform=None, list_file=None, seed: int = 0):
        root = Path(root)
        if list_file is not None:
            pairs = read_pair_list(root, Path(list_file))
        else:  # 'trainval' = train + val, as for a test-server submission
            pairs = [
                p
                for part in (("train", "val") if split == "trainval" else (split,))
                for p in self._split_pairs(root, part)
            ]
        super().__init__(pairs, transform, seed)
        self._lut = cityscapes_lut()

    @staticmethod
    def _split_pairs(root: Path, split: str) -> list[tuple[Path, Optional[Path]]]:
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DatasetError(f"Cityscapes images not found: {image_dir}")
        pairs = []
        for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
            pairs.append((image, None if split == "test" else label))
        if not pairs:
            raise DatasetError(f"no *_leftImg8bit.png images under {image_dir}")
        return pairs

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return self._lut[raw]


class ADE20K(SegmentationDataset):
    """Official ADEChallengeData2016 layout: images/<split>/*.jpg, annotations/<split>/*.png
    (0 = other -> ignored, 1..150 -> 0..149)."""

    name = "ade20k"
    class_names = [f"ade_{i}" for i in range(150)]
    palette = default_palette(150)

    def __init__(self, root, split: str = "training", transform=None, seed: int = 0):
        root = Path(root)
        image_dir = root / "images" / split
        if not image_dir.is_dir():
            raise DatasetError(f"ADE20K images not found: {image_dir}")
        pairs = [(p, root / "annotations" / split / (p.stem + ".png")) for p in sorted(image_dir.glob("*.jpg"))]
        if not pairs:
            raise DatasetError(f"no .jpg images under {image_dir}")
        super().__init__(pairs, transform, seed)
        self._lut = np.full(256, IGNORE_INDEX, np.uint8)
        self._lut[1:151] = np.arange(150, dtype=np.uint8)

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return self._lut[raw]


class CustomDataset(SegmentationDataset):
    """An image folder, a label folder (index PNGs, same file stems) and a classes file.

    The classes file is JSON: [{"name": "road", "color": [128, 64, 128]}, ...] in class-id order;
    label value 255 is ignored. `from_root` reads the folder layout that training and
    `bevanet-eval --root` use: ROOT/classes.json, ROOT/images/<split>/, ROOT/labels/<split>/.
    """

    name = "custom"

    def __init__(self, image_dir, label_dir, classes_file, transform=None, seed: int = 0, pairs=None):
        image_dir, label_dir, classes_file = Path(image_dir), Path(label_dir), Path(classes_file)
        if not classes_file.is_file():
            raise DatasetError(f"classes file not found: {classes_file}")
        try:
            classes = json.loads(classes_file.read_text())
            self.class_names = [c["name"] for c in classes]
            self.palette = [list(c.get("color", default_palette(len(classes))[i])) for i, c in enumerate(classes)]
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{classes_file}: expected a JSON list of {{'name', 'color'}} ({exc})") from None
        if pairs is None:
            if not image_dir.is_dir():
                raise DatasetError(f"image folder not found: {image_dir}")
            images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if not images:
                raise DatasetError(f"no images in {image_dir}")
            pairs = [(p, label_dir / (p.stem + ".png")) for p in images]
        super().__init__(pairs, transform, seed)

    @classmethod
    def from_root(cls, root, split: str = "train", list_file=None, transform=None, seed: int = 0) -> CustomDataset:
        """ROOT/classes.json with ROOT/images/<split>/ and ROOT/labels/<split>/, or with a list file
        of 'image label' pairs relative to ROOT."""
        root = Path(root)
        image_dir, label_dir = root / "images" / split, root / "labels" / split
        if list_file is not None:
            return cls(image_dir, label_dir, root / "classes.json", transform, seed, read_pair_list(root, list_file))
        if not image_dir.is_dir():
            raise DatasetError(
                f"custom dataset: {image_dir} not found (expected {root}/classes.json, "
                f"{root}/images/{split}/ and {root}/labels/{split}/, or a list file)"
            )
        return cls(image_dir, label_dir, root / "classes.json", transform, seed)


class ImageFolderClassification(Dataset):
    """ImageNet-style folder: root/<class name>/<image>; classes in sorted order."""

    def __init__(self, root, transform: Optional[Callable] = None, seed: int = 0):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"image folder not found: {root}")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise DatasetError(f"no class folders under {root}")
        self.samples = [
            (p, i)
            for i, c in enumerate(self.classes)
            for p in sorted((root / c).iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item):
        index, aug_seed = item if isinstance(item, tuple) else (item, (self.seed, self.epoch, item))
        path, target = self.samples[index]
        image = read_image(path)
        if self.transform is not None:
            image = self.transform(image, np.random.default_rng(aug_seed))
        return image, target


def build_dataset(
    name: str,
    root,
    split_list=None,
    split: str = "train",
    transform=None,
    encoding: str = "index",
    seed: int = 0,
    **kwargs,
) -> SegmentationDataset:
    """Dataset by name ('camvid', 'cityscapes', 'ade20k', 'custom'). CamVid without a list file
    takes a named split (CAMVID_SPLITS: train, val, trainval, heldout, heldout-train); custom
    reads ROOT's layout (CustomDataset.from_root) unless image_dir, label_dir and classes_file
    are given."""
    if name == "camvid":
        if split_list is None:
            return CamVid(root, None, transform, encoding=encoding, seed=seed, split=split)
        return CamVid(root, split_list, transform, encoding=encoding, seed=seed)
    if name == "cityscapes":
        return Cityscapes(root, split, transform, list_file=split_list, seed=seed)
    if name == "ade20k":
        return ADE20K(root, {"train": "training", "val": "validation"}.get(split, split), transform, seed=seed)
    if name == "custom":
        if kwargs.get("image_dir"):  # explicit folders and classes file instead of ROOT's layout
            return CustomDataset(kwargs["image_dir"], kwargs["label_dir"], kwargs["classes_file"], transform, seed=seed)
        return CustomDataset.from_root(root, split, split_list, transform, seed)
    raise ValueError(f"unknown dataset '{name}'; known: camvid, cityscapes, ade20k, custom")
