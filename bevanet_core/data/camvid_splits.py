"""CamVid's named splits by drive, and the drive a frame comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .files import DatasetError, read_pair_list

# CamVid splits by drive. The SegNet copy's val (0016E5) is frames of a drive whose other frames are
# in train, interleaved with val's, so a model that trained on train has seen val's street: val
# measures memory of that street more than generalisation. 'heldout' is a whole drive (0006R0, 101
# frames) that 'heldout-train' (0001TP and 0016E5 from train and val, 367 frames) never shows: the
# split that model selection uses. 'trainval' (468 frames) is what a model for other streets trains on.
CAMVID_LISTS = ("train.lst", "val.lst")
CAMVID_HELDOUT_SEQUENCES = ("0006R0",)
CAMVID_SPLITS: dict[str, tuple[tuple[str, ...], Optional[tuple[str, ...]], tuple[str, ...]]] = {
    # name: (list files, sequences kept (None: all), sequences left out)
    "train": (("train.lst",), None, ()),
    "val": (("val.lst",), None, ()),
    "trainval": (CAMVID_LISTS, None, ()),
    "heldout": (CAMVID_LISTS, CAMVID_HELDOUT_SEQUENCES, ()),
    "heldout-train": (CAMVID_LISTS, None, CAMVID_HELDOUT_SEQUENCES),
}


def camvid_sequence(path: Path) -> str:
    """The drive a CamVid frame comes from: its file name's prefix ('0006R0_f00930.png' -> '0006R0')."""
    return path.name.split("_", 1)[0]


def camvid_split_pairs(root: Path, split: str) -> list[tuple[Path, Optional[Path]]]:
    """The (image, label) pairs of a named CamVid split (CAMVID_SPLITS), or of `<split>.lst`."""
    if split not in CAMVID_SPLITS:
        list_file = root / f"{split}.lst"
        if not list_file.is_file():
            raise DatasetError(
                f"unknown CamVid split {split!r} (no {list_file}); named splits: {', '.join(CAMVID_SPLITS)}"
            )
        return read_pair_list(root, list_file)
    lists, keep, leave_out = CAMVID_SPLITS[split]
    pairs = [pair for name in lists for pair in read_pair_list(root, root / name)]
    pairs = [
        (image, label)
        for image, label in pairs
        if (keep is None or camvid_sequence(image) in keep) and camvid_sequence(image) not in leave_out
    ]
    if not pairs:
        raise DatasetError(f"CamVid split {split!r} has no frames under {root}")
    return pairs
