"""A custom folder (images, index-PNG labels, a JSON class list) trains and evaluates as
docs/training.md shows: `bevanet-train --set data.dataset=custom data.root=DIR` and
`bevanet-eval --dataset custom` with either `--root DIR` or the three folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bevanet_core.cli import evaluate as eval_cli
from bevanet_core.cli import train as train_cli
from bevanet_core.data.datasets import CustomDataset, DatasetError, build_dataset

CLASSES = [{"name": "road", "color": [128, 64, 128]}, {"name": "sky", "color": [128, 128, 128]}]


def make_custom_folder(root: Path, frames: int = 2, size=(128, 96)) -> Path:
    """ROOT/classes.json, ROOT/images/{train,val}/*.png, ROOT/labels/{train,val}/*.png: the sky
    bright above, the road dark below, so a label is a function of the image."""
    rng = np.random.default_rng(0)
    w, h = size
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(frames):
            horizon = h // 3 + i * 4
            label = np.zeros((h, w), np.uint8)
            label[:horizon] = 1
            label[horizon, : w // 4] = 255  # ignored pixels are allowed
            image = np.where(label[..., None] == 1, 200, 60).astype(np.uint8).repeat(3, 2)
            image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / "images" / split / f"f{i}.png")
            Image.fromarray(label).save(root / "labels" / split / f"f{i}.png")
    return root


def test_build_dataset_reads_the_root_layout_and_names_what_is_missing(tmp_path):
    root = make_custom_folder(tmp_path / "my_data")
    val = build_dataset("custom", root, None, "val")
    assert isinstance(val, CustomDataset) and len(val) == 2 and val.class_names == ["road", "sky"]
    image, label = val[0]
    assert image.shape == (96, 128, 3) and set(np.unique(label)) == {0, 1, 255}
    (root / "pairs.lst").write_text("images/train/f1.png labels/train/f1.png\n")
    assert len(build_dataset("custom", root, root / "pairs.lst", "train")) == 1
    with pytest.raises(DatasetError, match=r"images/test not found .*classes\.json"):
        build_dataset("custom", root, None, "test")
    (root / "classes.json").unlink()
    with pytest.raises(DatasetError, match="classes file not found"):
        build_dataset("custom", root, None, "val")


def test_train_on_a_custom_folder_then_evaluate_it_both_ways(tmp_path, capsys):
    root = make_custom_folder(tmp_path / "my_data")
    out = tmp_path / "run"
    code = train_cli.main(
        [
            "--config",
            str(Path(__file__).resolve().parents[1] / "training/bevanet-s_custom-480x360.yaml"),
            "--set",
            f"data.root={root}",
            "model.num_classes=2",
            "data.base_size=128",
            "data.crop_size=[128,96]",
            "data.workers=0",
            "optim.batch_size=2",
            "optim.iterations=2",
            "run.val_every=2",
            "run.threads=1",
            f"run.out_dir={out}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    weights = out / "best.safetensors"
    assert weights.is_file()
    common = ["--weights", str(weights), "--backend", "torch", "--precision", "fp32", "--threads", "1"]
    by_root = tmp_path / "by_root.json"
    assert eval_cli.main(["--dataset", "custom", "--root", str(root), "--json", str(by_root), *common]) == 0
    by_folders = tmp_path / "by_folders.json"
    folders = ["--image-dir", str(root / "images/val"), "--label-dir", str(root / "labels/val")]
    argv = ["--dataset", "custom", *folders, "--classes", str(root / "classes.json"), "--json", str(by_folders)]
    assert eval_cli.main(argv + common) == 0, capsys.readouterr().err
    a, b = json.loads(by_root.read_text()), json.loads(by_folders.read_text())
    assert a["miou"] == pytest.approx(b["miou"]) and 0.0 <= a["miou"] <= 100.0
    assert a["images"] == 2 and list(a["per_class_iou"]) == ["road", "sky"]


def test_eval_custom_names_what_it_lacks(tmp_path, capsys):
    root = make_custom_folder(tmp_path / "my_data")
    with pytest.raises(SystemExit):
        eval_cli.main(["--dataset", "custom", "--image-dir", str(root / "images/val")])
    assert "needs --label-dir, --classes too" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_cli.main(["--dataset", "custom"])
    assert "--root is required (or --image-dir, --label-dir and --classes)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_cli.main(["--dataset", "camvid"])
    assert "--root is required" in capsys.readouterr().err
