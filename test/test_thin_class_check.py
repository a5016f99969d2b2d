"""studies/thin_class_check.py tells a misplaced thin class from a missed one."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _write(root: Path, preds: Path, labels, predictions):
    (root / "annot").mkdir(parents=True)
    preds.mkdir()
    lines = []
    for i, (label, pred) in enumerate(zip(labels, predictions, strict=True)):
        cv2.imwrite(str(root / "annot" / f"f{i}.png"), label)
        cv2.imwrite(str(preds / f"f{i}.png"), pred)
        lines.append(f"img/f{i}.png annot/f{i}.png")
    (root / "val.lst").write_text("\n".join(lines) + "\n")


def _run(*args):
    return subprocess.run(
        [sys.executable, "studies/thin_class_check.py", *map(str, args)], cwd=REPO, capture_output=True, text=True
    )


def test_a_pole_one_pixel_off_is_wrong_exactly_and_right_within_one_pixel(tmp_path):
    label = np.full((40, 60), 1, np.uint8)  # Building
    label[5:35, 20:22] = 2  # a 2-px pole
    label[0, :] = 11  # void: never counted
    offset = label.copy()
    offset[5:35, 20:22] = 1
    offset[5:35, 22:24] = 2  # drawn 2 px to the right: no overlap
    offset[0, :] = 2
    missed = label.copy()
    missed[label == 2] = 5  # Tree
    root, preds = tmp_path / "camvid", tmp_path / "pred"
    _write(root, preds, [label, label], [offset, missed])
    proc = _run(
        "--predictions", preds, "--root", root, "--class", "Pole", "--tolerance", 1, 2, "--json", tmp_path / "r.json"
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["iou"] == 0.0 and r["label_pixels"] == 120 and r["predicted_pixels"] == 60
    assert r["tolerance"]["1"]["precision"] == pytest.approx(50.0)  # 1 of 2 columns within 1 px
    assert r["tolerance"]["2"]["precision"] == pytest.approx(100.0)
    assert r["tolerance"]["2"]["recall"] == pytest.approx(50.0)  # the missed pole stays missed
    assert r["labelled_pixels_predicted_as"][1] == 60 and r["labelled_pixels_predicted_as"][5] == 60
    assert r["false_pixels_labelled_as"][1] == 60
    assert "IoU 0.00" in proc.stdout and "Tree 50.0%" in proc.stdout


def test_missing_or_mismatched_predictions_are_named(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    root, preds = tmp_path / "camvid", tmp_path / "pred"
    _write(root, preds, [label], [np.zeros((4, 4), np.uint8)])
    proc = _run("--predictions", preds, "--root", root)
    assert proc.returncode != 0 and "a prediction is 4x4 but its label 8x8" in proc.stderr
    (preds / "f0.png").unlink()
    proc = _run("--predictions", preds, "--root", root)
    assert proc.returncode == 2 and "no prediction" in proc.stderr and "f0.png" in proc.stderr
    proc = _run("--predictions", tmp_path / "nowhere", "--root", root)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
