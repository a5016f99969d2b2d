"""The recipe schema: every key typed and ranged when a recipe is read and for every --set, with
one line naming the key, the value and what is expected (bevanet-train exits 2, no traceback)."""

import subprocess
import sys
from pathlib import Path

import pytest

from bevanet_core.training.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "training" / "bevanet-s_camvid-480x360.yaml")


@pytest.mark.parametrize("recipe", sorted((REPO / "training").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_passes_the_schema(recipe):
    load_config(str(recipe))


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.batch_size=0", "optim.batch_size must be >= 1, got 0"),
        ("optim.iterations=-5", "optim.iterations must be >= 1"),
        ("data.root=[a, b]", "data.root must be text, got ['a', 'b']"),
        ("data.flip='false'", "data.flip must be true or false, got 'false'"),
        ("run.channels_last=1", "run.channels_last must be true or false, got 1"),
        ("run.precision=fp64", "run.precision must be one of 'auto', 'fp32', 'bf16', 'fp16'"),
        ("optim.lr=fast", "optim.lr must be a number, got 'fast'"),
        ("optim.lr=0", "optim.lr must be > 0"),
        ("model.num_classes=1.5", "model.num_classes must be an integer, got 1.5"),
        ("model.variant=bevanet_xl", "model.variant must be one of bevanet, bevanet_s"),
        ("run.device=gpu", "run.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("data.crop_size=[480]", "data.crop_size must be [width, height]"),
        ("data.crop_size=[480, x]", "data.crop_size must be a list of integers"),
        ("run.ema_decay=1", "run.ema_decay must be in [0, 1)"),
        ("loss.ohem_thresh=2", "loss.ohem_thresh must be in [0, 1]"),
        ("data.class_weights=[1, 2]", "data.class_weights has 2 weights but model.num_classes is 11"),
        ("data.class_weights=inverse", "data.class_weights must be a list of weights >= 0, 'median-frequency'"),
        ("data.photometric=strong", "data.photometric must be one of 'none', 'distortion', 'jitter', 'camera'"),
        ("data.scale_min=3", "data.scale_max (2.1) must be >= data.scale_min (3)"),
        ("optim.lr_mult={backbone: -1}", "optim.lr_mult must be multipliers >= 0"),
        ("run.start_iteration=5000", "run.start_iteration (5000) must be below optim.iterations (1350)"),
        ("data.extra_train=frames", "data.extra_train must be a list of texts"),
        ("optim.nope=1", "unknown config key 'optim.nope'"),
        ("nope.lr=1", "unknown config section 'nope'"),
    ],
)
def test_a_bad_value_is_named_with_what_is_expected(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(RECIPE, [override])
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_values_that_read_as_other_types_are_coerced_where_that_is_safe():
    cfg = load_config(RECIPE, ["optim.lr=6e-5", "optim.iterations=100.0", "run.val_limit=null"])
    assert cfg.optim.lr == 6e-5 and cfg.optim.iterations == 100 and cfg.run.val_limit is None


@pytest.mark.parametrize(
    "text, message",
    [("model: [a\n", "is not valid YAML"), ("- 1\n- 2\n", "must hold sections"), ("optim: 3\n", "section 'optim'")],
)
def test_a_recipe_file_that_is_not_a_recipe_is_named(tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(recipe))


def test_bevanet_train_refuses_in_one_line_before_building_anything(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bevanet_core.cli.train",
            "--config",
            RECIPE,
            "--set",
            "optim.batch_size=0",
            f"run.out_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 2
    assert "bevanet-train: error: config optim.batch_size must be >= 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()
