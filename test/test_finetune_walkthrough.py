"""docs/training.md's loop, end to end on a few frames with a tiny budget: mine the hard frames of
a bag, label them as a labelling tool exports them (class colours, or class indices), turn them
and CamVid into one training list, fine-tune the shipped model, calibrate it, export an engine
and run it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, read_checkpoint
from bevanet_core.cli import make_bag
from bevanet_core.data.classes import CAMVID_PALETTE
from bevanet_core.data.datasets import DatasetError, build_dataset
from bevanet_core.data.finetune import label_to_index

REPO = Path(__file__).resolve().parents[1]
EVERY = 10

pytestmark = pytest.mark.usefixtures("one_thread")


def _colour(label: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(CAMVID_PALETTE)] = np.asarray(CAMVID_PALETTE, np.uint8)
    return lut[label]


def test_mined_frames_to_a_finetuned_calibrated_engine(tmp_path, shared_data, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from bevanet_core.cli.calibrate import main as calibrate_main
    from bevanet_core.cli.export import main as export_main
    from bevanet_core.cli.finetune_data import main as finetune_data_main
    from bevanet_core.cli.mine import main as mine_main
    from bevanet_core.cli.train import main as train_main
    from bevanet_core.runtime import Segmenter

    camvid = shared_data / "camvid"
    monkeypatch.chdir(REPO)  # the recipe names the shipped weights relative to the repository
    # 1. a drive recorded as a bag; its hardest frames mined
    bag = tmp_path / "drive"
    assert (
        make_bag.main(
            [
                "--dataset",
                "camvid",
                "--root",
                str(camvid),
                "--list",
                "val.lst",
                "--every",
                str(EVERY),
                "--max-frames",
                "6",
                "--out",
                str(bag),
            ]
        )
        == 0
    )
    mined = tmp_path / "mined"
    assert mine_main([str(bag), "--count", "3", "--out", str(mined), "--input-size", "240x176"]) == 0
    picked = [r for r in csv.DictReader(open(mined / "scores.csv")) if r["picked"] == "1"]
    assert len(picked) == 3 and len(list((mined / "images").glob("*.png"))) == 3
    # 2. labelled in a tool: two exported in the class colours, one as class indices
    val = build_dataset("camvid", camvid, camvid / "val.lst")
    labels = tmp_path / "labels"
    labels.mkdir()
    truth = {}
    for k, row in enumerate(picked):
        _, label = val[int(row["index"]) * EVERY]
        truth[row["stamp_ns"]] = label
        out = labels / f"{row['stamp_ns']}.png"
        Image.fromarray(label if k == 0 else _colour(label)).save(out)
    # 3. one training list: CamVid train, then the labelled frames
    finetune = tmp_path / "finetune"
    assert (
        finetune_data_main(
            [
                "--mined",
                str(mined),
                "--labels",
                str(labels),
                "--out",
                str(finetune),
                "--base-root",
                str(camvid),
                "--repeat",
                "2",
                "--hold-out",
                "1",
            ]
        )
        == 0
    )
    lines = (finetune / "train.lst").read_text().splitlines()
    assert len(lines) == 367 + 2 * 2
    held_out = (finetune / "held_out.lst").read_text().splitlines()
    assert len(held_out) == 1 and held_out[0] not in lines
    for stamp, label in truth.items():
        converted = np.asarray(Image.open(finetune / "labels" / f"{stamp}.png"))
        np.testing.assert_array_equal(converted, label)
    # 4. the fine-tune, from the shipped weights, on that list (a tiny budget)
    run = tmp_path / "run"
    rc = train_main(
        [
            "--config",
            "training/bevanet-s_camvid-finetune.yaml",
            "--set",
            f"data.train_list={finetune / 'train.lst'}",
            "optim.iterations=2",
            "optim.batch_size=2",
            "data.base_size=240",
            "data.crop_size=[240,176]",
            "data.workers=0",
            "run.val_every=0",
            "run.val_limit=2",
            "run.log_every=1",
            "run.checkpoint_every=2",
            f"run.out_dir={run}",
        ]
    )
    assert rc == 0
    weights = run / "best.safetensors"
    assert weights.is_file()
    assert "initialised from bevanet_core/weights/bevanet_s_camvid.safetensors" in capsys.readouterr().out
    # 5. calibrated on labelled frames, exported, run
    rc = calibrate_main(
        [
            "--dataset",
            "camvid",
            "--root",
            "/",
            "--list",
            str(finetune / "held_out.lst"),
            "--input-size",
            "240x176",
            "--weights",
            str(weights),
            "--write",
        ]
    )
    assert rc == 0
    _, info = read_checkpoint(weights)
    temperature = info.extra["calibration"]["temperature"]
    onnx = tmp_path / "model.onnx"
    assert export_main(["--weights", str(weights), "--onnx", str(onnx), "--input-size", "256x256"]) == 0
    seg = Segmenter(weights=str(onnx), backend="onnxruntime")
    assert seg.temperature == pytest.approx(temperature)
    frame = np.asarray(Image.open(mined / picked[0]["file"]).convert("RGB"))
    res = seg.segment(frame, confidence=True)
    assert res.mask.shape == frame.shape[:2] and res.mask.max() < 11
    # the weights moved away from the shipped ones
    shipped, _ = read_checkpoint(DEFAULT_WEIGHTS)
    tuned, _ = read_checkpoint(weights)
    assert any(not np.array_equal(shipped[k].float().numpy(), tuned[k].float().numpy()) for k in shipped if k in tuned)


def test_labels_in_unknown_colours_are_refused(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(path)
    with pytest.raises(DatasetError, match="class colour of classes.json"):
        label_to_index(path, [list(c) for c in CAMVID_PALETTE])
    Image.fromarray(np.full((8, 8), 12, np.uint8)).save(path)  # indices past the classes: not labelled
    assert (label_to_index(path, [list(c) for c in CAMVID_PALETTE]) == 255).all()
