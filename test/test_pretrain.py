"""Classifier pretraining on a tiny real-image folder: it learns, resumes, and seeds segmentation."""

import json
from pathlib import Path

import cv2
import torch

from bevanet_core.checkpoint import load_state_dict_strict, read_checkpoint
from bevanet_core.models import build_model
from bevanet_core.training.pretrain import PretrainConfig, mix_batch, pretrain


def _patch_folder(shared_data, root: Path, per_class: int = 8):
    """Two classes cut from real CamVid frames: sky patches and road patches."""
    camvid = shared_data / "camvid"
    pairs = [line.split() for line in (camvid / "train.lst").read_text().splitlines()][:40]
    counts = {"sky": 0, "road": 0}
    for image_rel, label_rel in pairs:
        image = cv2.imread(str(camvid / image_rel))
        label = cv2.imread(str(camvid / label_rel), cv2.IMREAD_UNCHANGED)
        for name, cls in (("sky", 0), ("road", 3)):
            if counts[name] >= per_class:
                continue
            for y in range(0, 360 - 48, 24):
                for x in range(0, 480 - 48, 48):
                    if counts[name] < per_class and (label[y : y + 48, x : x + 48] == cls).mean() > 0.95:
                        (root / name).mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(
                            str(root / name / f"{image_rel.split('/')[-1][:-4]}_{y}_{x}.png"),
                            image[y : y + 48, x : x + 48],
                        )
                        counts[name] += 1
    assert min(counts.values()) == per_class, counts
    return root


def test_pretraining_learns_and_exports_a_backbone(shared_data, tmp_path):
    data = _patch_folder(shared_data, tmp_path / "patches")
    cfg = PretrainConfig(
        variant="bevanet_s_cls",
        train_dir=str(data),
        val_dir=str(data),
        out_dir=str(tmp_path / "run"),
        image_size=64,
        iterations=16,
        batch_size=8,
        lr=0.005,
        mixup=0.0,
        cutmix=0.0,
        workers=0,
        threads=1,
        checkpoint_every=4,
    )
    result = pretrain(cfg)
    assert result["iteration"] == 16
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "pretrain.log.jsonl").read_text().splitlines()]
    assert sum(losses[-4:]) / 4 < 0.3 * sum(losses[:4]) / 4, losses
    # 16 iterations leave BatchNorm running statistics unsettled, so eval-mode accuracy is only
    # checked for being measured, not for a level
    assert result["history"] and all(0.0 <= h["top1"] <= 100.0 for h in result["history"])
    state, _ = read_checkpoint(tmp_path / "run" / "backbone.safetensors")
    seg = build_model("bevanet_s", num_classes=11)
    report = load_state_dict_strict(seg, state, strict=False)
    assert not report["unexpected"] and not report["mismatched"]
    assert "conv1.0.weight" in state and "layer5_detail_semantic.0.conv3.weight" in state
    assert torch.equal(seg.state_dict()["layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])


def test_pretraining_resumes_exactly(shared_data, tmp_path):
    data = _patch_folder(shared_data, tmp_path / "patches", per_class=4)
    common = dict(
        variant="bevanet_s_cls",
        train_dir=str(data),
        val_dir=None,
        image_size=32,
        iterations=4,
        batch_size=4,
        lr=0.05,
        workers=0,
        threads=1,
        checkpoint_every=1,
    )
    pretrain(PretrainConfig(out_dir=str(tmp_path / "ref"), **common))
    pretrain(PretrainConfig(out_dir=str(tmp_path / "cut"), **common), stop_after=2)
    pretrain(PretrainConfig(out_dir=str(tmp_path / "cut"), **common), resume="auto")
    ref = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ref[k], cut[k]) for k in ref)


def test_mix_batch_keeps_target_mass():
    g = torch.Generator().manual_seed(0)
    images, targets = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    for _ in range(5):
        mixed, soft = mix_batch(images, targets, 3, 0.8, 1.0, g)
        assert mixed.shape == images.shape
        assert torch.allclose(soft.sum(1), torch.ones(4)) and (soft >= 0).all()
