"""studies/mount_check.py: its fixed views are the mount augmentation's warps, the pixels a warp
brings in are ignored, and the view as recorded scores what the plain evaluation does."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _study():
    spec = importlib.util.spec_from_file_location("mount_check", REPO / "studies" / "mount_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Drawn:
    """A generator whose draws are fixed: every step taken, uniform() gives the values in order."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return 0.0

    def uniform(self, low, high):
        return self.values.pop(0)


def test_a_view_is_the_mount_augmentation_with_its_draws_fixed():
    from bevanet_core.data.transforms import MountAugment

    study = _study()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    label = rng.integers(0, 11, (60, 80), dtype=np.uint8)
    pitch, keystone, roll = 0.04, -0.03, 3.0  # MountAugment draws them in this order
    want_image, want_label = MountAugment()(image, label, _Drawn([pitch, keystone, roll]), 255)
    frames = study.WarpedFrames([], (roll, pitch, keystone), [0.0] * 3, [1.0] * 3)
    got_image, got_label = frames.warp(image, label)
    assert np.array_equal(got_image, want_image) and np.array_equal(got_label, want_label)
    assert got_label[0, 0] == 255 or got_label[-1, -1] == 255  # brought in from outside: ignored
    assert np.allclose(MountAugment.matrix(80, 60, 0.0, 0.0, 0.0), np.eye(3))


def test_the_view_as_recorded_scores_what_the_evaluation_does(shared_data, tmp_path):
    import torch

    from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model
    from bevanet_core.data.datasets import build_dataset
    from bevanet_core.data.transforms import EvalTransform
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training.validation import evaluate

    src, data = shared_data / "camvid", tmp_path / "camvid"
    pair = next(line for line in (src / "train.lst").read_text().splitlines() if "0006R0" in line)
    val = (src / "val.lst").read_text().splitlines()[0]
    for rel in f"{pair} {val}".split():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, data / rel)
    (data / "train.lst").write_text(pair + "\n")
    (data / "val.lst").write_text(val + "\n")
    out = tmp_path / "mount.json"
    cmd = [sys.executable, "studies/mount_check.py", "--weights", str(DEFAULT_WEIGHTS), "--root", str(data)]
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    figures = report["miou"][str(DEFAULT_WEIGHTS)]
    assert report["frames"] == 1 and len(figures) == len(_study().VIEWS)
    model, info = load_model(DEFAULT_WEIGHTS)
    held = build_dataset("camvid", data, None, "heldout", EvalTransform(), "index", 0)
    plain = evaluate(model, held, torch.device("cpu"), 11, align_corners=logits_align_corners(info.variant)).miou()
    assert figures["as recorded"] == round(plain, 2)
    assert len(set(figures.values())) > 1  # the warps change what the model sees
