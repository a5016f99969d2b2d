"""Class weights from the training labels, their use in a run, and the recipe trials that compare
recipes with them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bevanet_core.data.datasets import build_dataset, read_label
from bevanet_core.training.class_weights import label_statistics, median_frequency_weights, resolve_class_weights
from bevanet_core.training.config import load_config
from bevanet_core.training.engine import Trainer

REPO = Path(__file__).resolve().parents[1]


def test_median_frequency_weights_by_hand():
    # class 0: 60 px in 2 images of 100 px (f 0.3); class 1: 30 px in 1 image (f 0.3); class 2:
    # 10 px in 1 image (f 0.1); class 3 absent. Median f 0.3: raw weights 1, 1, 3, then scaled to
    # a pixel-weighted mean of 1: (60 + 30 + 30) / 100 = 1.2.
    pixels, present_in = np.array([60, 30, 10, 0]), np.array([200, 100, 100, 0])
    w = median_frequency_weights(pixels, present_in)
    assert w == pytest.approx([1 / 1.2, 1 / 1.2, 3 / 1.2, 0.0], abs=1e-4)
    assert np.dot(w, pixels) / pixels.sum() == pytest.approx(1.0, abs=1e-3)
    sqrt = median_frequency_weights(pixels, present_in, power=0.5)
    assert sqrt[2] / sqrt[0] == pytest.approx(3**0.5, rel=1e-3)
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency_weights(np.zeros(3), np.zeros(3))


def test_label_statistics_match_the_label_files(camvid_subset, tmp_path):
    root = camvid_subset(tmp_path / "data", train=3, val=0)
    ds = build_dataset("camvid", root, root / "train.lst", "train", None, "index", 0)
    pixels, present_in = label_statistics(ds)
    labels = [ds.map_label(read_label(lp), lp) for _, lp in ds.pairs]
    expected = sum(np.bincount(lab[lab != 255].ravel(), minlength=11)[:11] for lab in labels)
    assert pixels.tolist() == expected.tolist()
    for c in range(11):
        assert present_in[c] == sum(lab.size for lab in labels if (lab == c).any())
    w = resolve_class_weights("sqrt-median-frequency", ds)
    assert len(w) == 11 and all(x >= 0 for x in w)
    rare, common = int(np.argmin(np.where(pixels > 0, pixels, np.inf))), int(np.argmax(pixels))
    assert w[rare] > w[common]
    assert resolve_class_weights([1.0] * 11, ds) == [1.0] * 11
    assert resolve_class_weights(None, ds) is None
    with pytest.raises(ValueError, match="unknown scheme 'inverse'"):
        resolve_class_weights("inverse", ds)
    with pytest.raises(ValueError, match="3 entries but the dataset has 11"):
        resolve_class_weights([1, 2, 3], ds)
    with pytest.raises(ValueError, match="non-negative"):
        resolve_class_weights([-1.0] + [1.0] * 10, ds)


def test_a_run_with_a_scheme_weighs_its_loss(camvid_subset, tmp_path):
    root = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    base = [
        f"data.root={root}",
        "data.train_list=train.lst",
        "data.val_list=val.lst",
        "data.workers=0",
        "data.crop_size=[128,96]",
        "data.base_size=128",
        "optim.batch_size=2",
        "optim.iterations=2",
        f"run.out_dir={tmp_path / 'run'}",
        "run.threads=1",
    ]
    trainer = Trainer(load_config(None, base + ["data.class_weights=median-frequency"]))
    w = trainer.class_weights
    assert trainer.criterion.bevanet.class_weight.tolist() == pytest.approx(w)
    assert trainer.criterion.bevanet.ohem.weight.tolist() == pytest.approx(w)
    assert Trainer(load_config(None, base)).criterion.bevanet.class_weight is None


def _trials(root: Path, tmp_path: Path, *extra, lr: str = "0.001"):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(  # no class weights: the "baseline=" arm is the recipe as it is
        "model: {variant: bevanet_s, num_classes: 11}\n"
        f"data: {{dataset: camvid, root: {root}, train_list: train.lst, val_list: val.lst, encoding: index,\n"
        "       base_size: 128, crop_size: [128, 96], workers: 0}\n"
        f"optim: {{lr: {lr}, batch_size: 2, iterations: 100}}\n"
    )
    return subprocess.run(
        [
            sys.executable,
            "studies/recipe_trials.py",
            "--recipe",
            str(recipe),
            "--iterations",
            "2",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "trials"),
            "--json",
            str(tmp_path / "t.json"),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_recipe_trials_compare_arms_and_do_not_rerun(camvid_subset, tmp_path):
    root = camvid_subset(tmp_path / "data", train=2, val=1)
    arms = ["--arm", "baseline=", "--arm", "weighted=data.class_weights=sqrt-median-frequency"]
    first = _trials(root, tmp_path, *arms)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((tmp_path / "t.json").read_text())
    assert set(report["trials"]) == {"baseline", "weighted"}
    assert report["trials"]["baseline"][0]["class_weights"] is None
    assert len(report["trials"]["weighted"][0]["class_weights"]) == 11
    assert report["start_iteration"] == 0  # the committed weights come from another recipe
    lines = report["table"].splitlines()
    assert lines[0].startswith("| arm | seeds | val mIoU") and "Pole" in lines[0] and len(lines) == 4
    result = tmp_path / "trials" / "baseline" / "seed1" / "result.json"
    assert result.is_file() and not (result.parent / "last.pt").exists()
    # the weights that were evaluated are kept, with what made them, ready to ship
    from bevanet_core.checkpoint import read_checkpoint

    _, info = read_checkpoint(result.parent.parent.parent / "weighted" / "seed1" / "weights.safetensors")
    weighted = report["trials"]["weighted"][0]
    assert info.extra["val_miou"] == round(weighted["miou"], 2) and info.extra["iteration"] == 2
    assert info.extra["trial_overrides"] == "data.class_weights=sqrt-median-frequency"
    assert info.extra["trial_seed"] == 1 and info.extra["recipe"] == weighted["settings"]["recipe"]
    again = _trials(root, tmp_path, *arms)  # finished trials are read back, not trained again
    assert again.returncode == 0 and json.loads((tmp_path / "t.json").read_text())["trials"] == report["trials"]
    clash = _trials(root, tmp_path, "--arm", "baseline=optim.lr=0.5")
    assert clash.returncode != 0 and "other settings" in clash.stderr
    edited = _trials(root, tmp_path, *arms, lr="0.002")  # same arms, an edited recipe: other trials
    assert edited.returncode != 0 and "other settings" in edited.stderr
    bad = _trials(root, tmp_path, "--arm", "nosep")
    assert bad.returncode == 2 and "NAME=" in bad.stderr


def test_an_arm_keeps_a_bracketed_list_whole():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_trials", REPO / "studies" / "recipe_trials.py")
    trials = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trials)
    name, overrides = trials.parse_arm("capped=data.class_weights=[1, 2.5, 3],optim.lr=0.002")
    assert name == "capped" and overrides == ["data.class_weights=[1, 2.5, 3]", "optim.lr=0.002"]
    assert trials.parse_arm("plain=")[1] == []


def test_a_recipe_edited_only_in_its_comments_is_the_same_trial(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_trials", REPO / "studies" / "recipe_trials.py")
    trials = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trials)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# a recipe\noptim:\n  lr: 0.01\n  momentum: 0.9\n")
    digest = trials.recipe_digest(recipe)
    recipe.write_text("# the recipe, comment reworded\noptim:\n  momentum: 0.9  # SGD\n  lr: 0.01\n")
    assert trials.recipe_digest(recipe) == digest
    recipe.write_text("optim:\n  lr: 0.02\n  momentum: 0.9\n")
    assert trials.recipe_digest(recipe) != digest
    # the run keys a trial sets itself (or that only say when a full run stops) are not the recipe
    recipe.write_text("optim:\n  lr: 0.01\n  momentum: 0.9\nrun:\n  threads: 2\n  plateau_window: 2000\n")
    assert trials.recipe_digest(recipe) == digest
    recipe.write_text("optim:\n  lr: 0.01\n  momentum: 0.9\nrun:\n  precision: fp32\n")
    assert trials.recipe_digest(recipe) != digest
