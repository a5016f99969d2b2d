"""The authors' recipes as configs: warm-up, AdamW, per-parameter-group learning rates and
photometric augmentation in the engine, and every recipe in training/ loading and building its
network, objective and optimizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bevanet_core.data.transforms import TrainTransform, color_jitter, photometric_distortion
from bevanet_core.models import build_model, list_models
from bevanet_core.training.build import build_criterion, build_optimizer, lr_multiplier, poly_lr
from bevanet_core.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "training").glob("*.yaml"))


def test_linear_warmup_is_mmsegs():
    # mmseg: lr = poly * (1 - (1 - i / warmup) * (1 - ratio)); poly decays to min_lr
    assert poly_lr(0.05, 0, 1000, 0.9, 1e-4, 100, 1e-6) == pytest.approx((0.05 - 1e-4) * 1e-6 + 1e-6 * 1e-4)
    poly50 = (0.05 - 1e-4) * (1 - 50 / 1000) ** 0.9 + 1e-4
    assert poly_lr(0.05, 50, 1000, 0.9, 1e-4, 100, 1e-6) == pytest.approx(poly50 * (1 - 0.5 * (1 - 1e-6)))
    poly100 = (0.05 - 1e-4) * (1 - 100 / 1000) ** 0.9 + 1e-4
    assert poly_lr(0.05, 100, 1000, 0.9, 1e-4, 100, 1e-6) == pytest.approx(poly100)
    assert poly_lr(0.05, 1000, 1000, 0.9, 1e-4) == pytest.approx(1e-4)
    # STDC-Seg's warm-up is geometric: 1e-5 -> 1e-2 over 1000 iterations from ratio 1e-3
    assert poly_lr(0.01, 0, 60000, 0.9, 0, 1000, 1e-3, "exp") == pytest.approx(1e-5)
    assert poly_lr(0.01, 500, 60000, 0.9, 0, 1000, 1e-3, "exp") == pytest.approx(
        0.01 * (1 - 500 / 60000) ** 0.9 * 10**-1.5
    )
    with pytest.raises(ValueError, match="warmup_mode"):
        poly_lr(0.01, 0, 10, warmup_iters=5, warmup_mode="cosine")
    # the PIDNet/BEVANet default is untouched: no warm-up, decays to 0
    assert poly_lr(0.01, 0, 100) == 0.01 and poly_lr(0.01, 100, 100) == 0.0


def test_lr_multipliers_take_the_longest_prefix():
    mult = {"": 10.0, "cp.backbone": 1.0}
    assert lr_multiplier("cp.backbone.features.0.conv.weight", mult) == 1.0
    assert lr_multiplier("cp.arm16.conv.conv.weight", mult) == 10.0
    assert lr_multiplier("ffm.convblk.conv.weight", mult) == 10.0
    assert lr_multiplier("anything", {}) == 1.0


def test_stdc_recipe_trains_its_heads_ten_times_faster():
    cfg = load_config(REPO / "training" / "stdc1_cityscapes-512x1024.yaml")
    model = build_model("stdc1", num_classes=19, aux_heads=True)
    opt = build_optimizer(model, cfg.optim)
    by_mult = {g["lr_mult"]: g for g in opt.param_groups}
    assert sorted(by_mult) == [1.0, 10.0]
    backbone = {id(p) for n, p in model.named_parameters() if n.startswith("cp.backbone.")}
    assert {id(p) for p in by_mult[1.0]["params"]} == backbone
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert by_mult[10.0]["lr"] == pytest.approx(10 * cfg.optim.lr)


def test_adamw_recipe_builds_adamw():
    cfg = load_config(None, ["optim.name=adamw", "optim.lr=6e-5", "optim.weight_decay=0.01"])
    opt = build_optimizer(build_model("pidnet_s", num_classes=11), cfg.optim)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[0]["lr"] == 6e-5
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(build_model("pidnet_s", num_classes=11), load_config(None, ["optim.name=lamb"]).optim)


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, 64, dtype=np.float32)
    img = np.stack([np.tile(grad, (48, 1)), np.tile(grad[::-1], (48, 1)), np.full((48, 64), 90.0)], -1)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def test_photometric_distortion_is_a_function_of_the_generator():
    img = _image()
    a = photometric_distortion(img, np.random.default_rng(7))
    b = photometric_distortion(img, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    changed = [not np.array_equal(photometric_distortion(img, np.random.default_rng(s)), img) for s in range(20)]
    # each of the four steps fires with probability 0.5: all 20 draws leaving it alone is ~1e-24
    assert sum(changed) >= 15


def test_color_jitter_identity_at_zero_and_bounded_otherwise():
    img = _image()
    same = color_jitter(img, np.random.default_rng(0), brightness=0.0, contrast=0.0, saturation=0.0)
    assert np.abs(same.astype(int) - img).max() <= 1  # rounding of the grey blends only
    out = color_jitter(img, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == img.shape and not np.array_equal(out, img)


def test_train_transform_applies_the_mode_and_rejects_unknown_ones():
    img, label = _image(), np.zeros((48, 64), np.uint8)
    plain = TrainTransform(64, (64, 48), 1.0, 1.0, flip=False)
    jitter = TrainTransform(64, (64, 48), 1.0, 1.0, flip=False, photometric="jitter")
    x0 = plain(img, label, np.random.default_rng(3))[0]
    x1 = jitter(img, label, np.random.default_rng(3))[0]
    assert x0.shape == x1.shape and not torch.equal(x0, x1)
    with pytest.raises(ValueError, match="data.photometric"):
        TrainTransform(64, (64, 48), photometric="colour")


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_builds_its_network_objective_and_optimizer(recipe):
    cfg = load_config(recipe)
    assert cfg.model.variant in list_models(), f"{recipe.name}: unknown variant {cfg.model.variant}"
    TrainTransform(cfg.data.base_size, tuple(cfg.data.crop_size), photometric=cfg.data.photometric)
    model = build_model(cfg.model.variant, num_classes=cfg.model.num_classes, aux_heads=True)
    opt = build_optimizer(model, cfg.optim)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    weights = None
    if isinstance(cfg.data.class_weights, str):  # a scheme: computed from the labels when a run starts
        from bevanet_core.training.class_weights import SCHEMES

        assert cfg.data.class_weights in SCHEMES, f"{recipe.name}: unknown scheme {cfg.data.class_weights}"
        with pytest.raises(ValueError, match="is a scheme"):
            build_criterion(cfg)
        weights = [1.0] * cfg.model.num_classes
    criterion = build_criterion(cfg, weights)
    model.train()
    w, h = 64, 64
    x = torch.randn(2, 3, h, w)
    target = torch.randint(0, cfg.model.num_classes, (2, h, w))
    edge = torch.zeros(2, h, w)
    edge[:, :, 30:33] = 1
    loss = criterion(model(x), target, edge)["loss"]
    assert torch.isfinite(loss)


def test_config_numbers_are_coerced_and_bad_ones_named():
    cfg = load_config(None, ["optim.lr=6e-5", "optim.iterations=100", "data.scale_min=1"])
    assert cfg.optim.lr == 6e-5 and isinstance(cfg.optim.lr, float)  # YAML reads 6e-5 as a string
    assert cfg.data.scale_min == 1.0 and isinstance(cfg.data.scale_min, float)
    with pytest.raises(ValueError, match="optim.iterations must be an integer"):
        load_config(None, ["optim.iterations=many"])
    with pytest.raises(ValueError, match="optim.lr must be a number"):
        load_config(None, ["optim.lr=fast"])


def test_no_decay_keys_zero_the_weight_decay_of_matching_parameters():
    cfg = load_config(None, ["optim.name=adamw", "optim.weight_decay=0.01", 'optim.no_decay=["norm"]'])
    model = build_model("van_tiny_lightham", num_classes=11)
    opt = build_optimizer(model, cfg.optim)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert decay_of[id(p)] == (0.0 if "norm" in name else 0.01), name
    assert any("norm" in n for n, _ in model.named_parameters())
