"""Datasets and transforms on real data: label mappings, augmentation invariants, clear errors."""

import shutil

import cv2
import numpy as np
import pytest

from bevanet_core.data.camvid_splits import CAMVID_SPLITS, camvid_sequence
from bevanet_core.data.classes import IGNORE_INDEX
from bevanet_core.data.datasets import (
    CamVid,
    Cityscapes,
    DatasetError,
    build_dataset,
    cityscapes_lut,
    cityscapes_trainid_to_labelid,
)
from bevanet_core.data.transforms import MountAugment, TrainTransform, boundary_target

VALID_CAMVID = set(range(11)) | {IGNORE_INDEX}


def test_cityscapes_labelids_map_to_the_stored_trainids(shared_data):
    root = shared_data / "cityscapes_fixture"
    ds = Cityscapes(root, split="val")
    assert len(ds) == 1
    image, label = ds[0]
    stem = ds.pairs[0][1].name.replace("_labelIds.png", "")
    stored = cv2.imread(str(ds.pairs[0][1].parent / f"{stem}_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape[:2] == label.shape == stored.shape
    raw = cv2.imread(str(ds.pairs[0][1]), cv2.IMREAD_UNCHANGED)
    # the fixture's labelIds and labelTrainIds PNGs were downscaled separately, so a few class
    # boundary pixels (77 of 32768) disagree; for every labelId the stored majority must be ours
    lut = cityscapes_lut()
    for label_id in np.unique(raw):
        values, counts = np.unique(stored[raw == label_id], return_counts=True)
        assert values[counts.argmax()] == lut[label_id], label_id
    assert (label == stored).mean() > 0.995
    assert len(np.unique(label)) > 3  # a real scene, not a trivial map


def test_cityscapes_trainid_round_trip_for_the_test_server():
    lut = cityscapes_lut()
    train_ids = np.arange(19, dtype=np.uint8)
    assert np.array_equal(lut[cityscapes_trainid_to_labelid(train_ids)], train_ids)


def test_camvid_void_becomes_ignore(shared_data):
    ds = CamVid(shared_data / "camvid", shared_data / "camvid" / "val.lst")
    assert len(ds) == 101
    raw = cv2.imread(str(ds.pairs[0][1]), cv2.IMREAD_UNCHANGED)
    _, label = ds[0]
    assert (raw == 11).any(), "this frame has void pixels"
    assert np.array_equal(label == IGNORE_INDEX, raw == 11)
    assert set(np.unique(label)) <= VALID_CAMVID


def test_camvid_rgb_encoding_matches_index_encoding(shared_data, tmp_path):
    src = CamVid(shared_data / "camvid", shared_data / "camvid" / "val.lst")
    (tmp_path / "img").mkdir()
    (tmp_path / "rgb").mkdir()
    lines = []
    for i in range(2):
        image_path, label_path = src.pairs[i]
        _, index_label = src[i]
        codes = np.zeros(index_label.shape + (3,), np.uint8)
        for cls, rgb in enumerate(CamVid.RGB_CODES):
            codes[index_label == cls] = rgb
        shutil.copy(image_path, tmp_path / "img" / image_path.name)
        cv2.imwrite(str(tmp_path / "rgb" / label_path.name), cv2.cvtColor(codes, cv2.COLOR_RGB2BGR))
        lines.append(f"img/{image_path.name} rgb/{label_path.name}")
    (tmp_path / "list.lst").write_text("\n".join(lines))
    rgb_ds = CamVid(tmp_path, tmp_path / "list.lst", encoding="rgb")
    for i in range(2):
        assert np.array_equal(rgb_ds[i][1], src[i][1])


def test_augmentation_keeps_labels_in_the_class_set(shared_data):
    ds = CamVid(shared_data / "camvid", shared_data / "camvid" / "train.lst")
    tf = TrainTransform(base_size=480, crop_size=(240, 176))
    for i, seed in zip(range(0, 360, 45), range(8), strict=True):
        image, label = ds[i]
        x, y, edge = tf(image, label, np.random.default_rng(seed))
        assert x.shape == (3, 176, 240) and y.shape == (176, 240) and edge.shape == (176, 240)
        assert set(np.unique(y.numpy())) <= VALID_CAMVID
        assert set(np.unique(edge.numpy())) <= {0.0, 1.0}


def test_augmentation_is_a_pure_function_of_its_seed(shared_data):
    ds = CamVid(shared_data / "camvid", shared_data / "camvid" / "train.lst")
    tf = TrainTransform(base_size=480, crop_size=(160, 120))
    image, label = ds[3]
    a = tf(image, label, np.random.default_rng(7))
    b = tf(image, label, np.random.default_rng(7))
    c = tf(image, label, np.random.default_rng(8))
    assert all(np.array_equal(u.numpy(), v.numpy()) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


def test_flip_crop_and_pad_move_image_and_label_together():
    # the image encodes its label, so any misalignment shows up as a mismatch; at scale 1 the
    # pixels are untouched (at other scales bilinear image resizing blends class borders)
    rng = np.random.default_rng(0)
    label = (rng.integers(0, 11, (45, 60)).repeat(8, 0).repeat(8, 1)).astype(np.uint8)
    image = np.stack([label * 20] * 3, axis=-1).astype(np.uint8)
    for crop in ((320, 240), (512, 400)):  # a crop inside the image, and one that needs padding
        tf = TrainTransform(
            base_size=480, crop_size=crop, scale_min=1.0, scale_max=1.0, mean=[0, 0, 0], std=[1 / 255] * 3
        )
        flipped = 0
        for seed in range(6):
            x, y, _ = tf(image, label, np.random.default_rng(seed))
            labelled = y.numpy() != IGNORE_INDEX
            assert np.array_equal(np.rint(x[0].numpy()[labelled] / 20).astype(int), y.numpy()[labelled])
            assert (x[0].numpy()[~labelled] == 0).all()  # padding: ignore label, black image
            assert labelled.all() == (crop == (320, 240))
            flipped += int(np.array_equal(y.numpy()[:360, 512 - 480 :], label[:, ::-1]))  # pad is right/bottom
        if crop == (512, 400):
            assert 0 < flipped < 6  # both flipped and unflipped samples were seen


def test_boundary_target_marks_class_edges():
    label = np.zeros((64, 64), np.uint8)
    label[:, 32:] = 3
    edge = boundary_target(label)
    assert edge[:, 28:36].any() and not edge[:, :20].any() and not edge[:, 44:].any()
    # the border is zeroed before the 4x4 dilation, as PIDNet does
    top = np.zeros((64, 64), np.uint8)
    top[3:, :] = 5  # the only class edge lies inside a 6-pixel border
    assert boundary_target(top).any()
    assert not boundary_target(top, border=6).any()


def _mini_dataset(shared_data, tmp_path, n=2):
    src = CamVid(shared_data / "camvid", shared_data / "camvid" / "val.lst")
    lines = []
    for image_path, label_path in src.pairs[:n]:
        shutil.copy(image_path, tmp_path / image_path.name)
        shutil.copy(label_path, tmp_path / ("L" + label_path.name))
        lines.append(f"{image_path.name} L{label_path.name}")
    (tmp_path / "list.lst").write_text("\n".join(lines))
    return src.pairs[:n]


def test_missing_file_is_named(shared_data, tmp_path):
    pairs = _mini_dataset(shared_data, tmp_path)
    (tmp_path / pairs[1][0].name).unlink()
    ds = CamVid(tmp_path, tmp_path / "list.lst")
    ds[0]
    with pytest.raises(DatasetError, match=f"image file not found: .*{pairs[1][0].name}"):
        ds[1]


def test_size_mismatch_is_named(shared_data, tmp_path):
    pairs = _mini_dataset(shared_data, tmp_path)
    label_path = tmp_path / ("L" + pairs[0][1].name)
    cv2.imwrite(str(label_path), cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)[:-8])
    with pytest.raises(DatasetError, match=r"is 480x360 but label .*is 480x352"):
        CamVid(tmp_path, tmp_path / "list.lst")[0]


def test_label_value_outside_the_classes_is_named(shared_data, tmp_path):
    pairs = _mini_dataset(shared_data, tmp_path)
    label_path = tmp_path / ("L" + pairs[0][1].name)
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 42
    cv2.imwrite(str(label_path), label)
    with pytest.raises(DatasetError, match=rf"label values \[42\] outside the 11 classes.*{label_path.name}"):
        CamVid(tmp_path, tmp_path / "list.lst")[0]


def test_bad_list_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match="list file not found"):
        CamVid(tmp_path, tmp_path / "absent.lst")
    (tmp_path / "bad.lst").write_text("a b c\n")
    with pytest.raises(DatasetError, match=r"bad.lst:1: expected 'image \[label\]'"):
        CamVid(tmp_path, tmp_path / "bad.lst")


def test_cityscapes_trainval_is_train_plus_val(shared_data, tmp_path):
    src = shared_data / "cityscapes_fixture"
    for split in ("train", "val"):
        for kind in ("leftImg8bit", "gtFine"):
            shutil.copytree(src / kind / "val", tmp_path / kind / split)
    both = Cityscapes(tmp_path, split="trainval")
    assert len(both) == 2 and {p[0].parts[-3] for p in both.pairs} == {"train", "val"}
    assert np.array_equal(both[0][1], both[1][1])
    with pytest.raises(DatasetError, match="Cityscapes images not found: .*leftImg8bit/train"):
        Cityscapes(src, split="trainval")  # the fixture has val only


def test_mount_warp_moves_image_and_label_together():
    # the image encodes its label (large blocks, so nearest and bilinear agree away from edges);
    # pixels the warp brings in from outside the frame are black and ignored
    rng = np.random.default_rng(1)
    label = (rng.integers(0, 11, (9, 12)).repeat(40, 0).repeat(40, 1)).astype(np.uint8)
    image = np.stack([label * 20] * 3, axis=-1).astype(np.uint8)
    warp = MountAugment(p_roll=1.0, p_pitch=1.0, p_keystone=1.0)
    for seed in range(4):
        warped, warped_label = warp(image, label, np.random.default_rng(seed), IGNORE_INDEX)
        assert warped.shape == image.shape and warped_label.shape == label.shape
        assert not np.array_equal(warped_label, label)
        outside = warped_label == IGNORE_INDEX
        deep_outside = cv2.erode(outside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert deep_outside.any() and (warped[deep_outside] == 0).all()
        inner = cv2.erode((~outside).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False  # the frame's edge
        box = np.ones((5, 5), np.uint8)
        interior = inner & (cv2.erode(warped_label, box) == cv2.dilate(warped_label, box))
        assert np.array_equal(np.rint(warped[..., 0][interior] / 20).astype(int), warped_label[interior])


def test_mount_warp_with_no_step_taken_changes_nothing():
    image = np.zeros((36, 48, 3), np.uint8)
    label = np.ones((36, 48), np.uint8)
    out = MountAugment(p_roll=0.0, p_pitch=0.0, p_keystone=0.0)(image, label, np.random.default_rng(0), 255)
    assert out[0] is image and out[1] is label
    with pytest.raises(ValueError, match="data.geometric"):
        TrainTransform(base_size=48, crop_size=(48, 36), geometric="tilt")


def test_camvid_splits_by_drive(shared_data):
    root = shared_data / "camvid"
    sizes = {split: len(build_dataset("camvid", root, None, split)) for split in CAMVID_SPLITS}
    assert sizes == {"train": 367, "val": 101, "trainval": 468, "heldout": 101, "heldout-train": 367}
    heldout = build_dataset("camvid", root, None, "heldout")
    rest = build_dataset("camvid", root, None, "heldout-train")
    drives = {camvid_sequence(path) for path, _ in heldout.pairs}
    assert drives == {"0006R0"}
    assert {camvid_sequence(path) for path, _ in rest.pairs} == {"0001TP", "0016E5"}
    assert not {p for p, _ in heldout.pairs} & {p for p, _ in rest.pairs}
    with pytest.raises(DatasetError, match="unknown CamVid split 'test'.*heldout"):
        build_dataset("camvid", root, None, "test")
