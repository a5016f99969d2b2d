"""Shipping a run as the default model: only when it scores higher, with its metadata and logs;
and the long run's warm start from the committed weights."""

import shutil
import subprocess
import sys
from pathlib import Path

import torch

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, read_checkpoint, save_weights
from bevanet_core.models import build_model

REPO = Path(__file__).resolve().parents[1]


def _run_dir(tmp_path: Path, model: torch.nn.Module) -> Path:
    run = tmp_path / "my-run"
    run.mkdir()
    _, info = read_checkpoint(DEFAULT_WEIGHTS)
    info.extra = {"iteration": 1234}
    save_weights(model, run / "best.safetensors", info)
    (run / "config.yaml").write_text("model: {variant: bevanet_s}\n")
    (run / "train.log.jsonl").write_text('{"iteration": 1}\n')
    return run


def _ship(run: Path, out: Path, data: Path, logs: Path, *extra):
    return subprocess.run(
        [
            sys.executable,
            "scripts/ship_default_model.py",
            str(run),
            "--out",
            str(out),
            "--data",
            str(data),
            "--logs",
            str(logs),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_a_worse_run_is_not_shipped_unless_forced(camvid_subset, tmp_path):
    data = camvid_subset(tmp_path / "val", train=0, val=2)
    out = tmp_path / "shipped.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, out)
    torch.manual_seed(0)
    run = _run_dir(tmp_path, build_model("bevanet_s", num_classes=11))  # untrained: far worse
    refused = _ship(run, out, data, tmp_path / "logs")
    assert refused.returncode == 1 and "not shipped" in refused.stdout
    assert out.read_bytes() == DEFAULT_WEIGHTS.read_bytes()  # untouched
    forced = _ship(run, out, data, tmp_path / "logs", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "fit its calibration" in forced.stdout  # the model it replaced was calibrated; this one is not
    state, info = read_checkpoint(out)
    assert state["head.conv2.weight"].dtype == torch.float16
    assert info.extra["iteration"] == 1234 and info.extra["recipe"] == "training/my-run.yaml"
    assert isinstance(info.extra["val_miou"], float) and tuple(info.input_size) == (480, 360)
    assert (tmp_path / "logs" / "my-run" / "train.log.jsonl").is_file()


def test_a_better_run_is_shipped(camvid_subset, tmp_path):
    from bevanet_core.checkpoint import load_model

    data = camvid_subset(tmp_path / "val", train=0, val=2)
    out = tmp_path / "shipped.safetensors"
    torch.manual_seed(0)
    save_weights(build_model("bevanet_s", num_classes=11), out, read_checkpoint(DEFAULT_WEIGHTS)[1])  # untrained
    model, _ = load_model()  # the committed model beats an untrained one
    run = _run_dir(tmp_path, model)
    shipped = _ship(run, out, data, tmp_path / "logs")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert read_checkpoint(out)[1].extra["val_miou"] > 20


def test_long_run_warm_start_continues_its_own_schedule(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from train_default_model import DEFAULT_RECIPE, warm_start_overrides
    finally:
        sys.path.pop(0)
    model = build_model("bevanet_s", num_classes=11)
    _, info = read_checkpoint(DEFAULT_WEIGHTS)
    own = tmp_path / "own.safetensors"
    info.extra = {"recipe": f"training/{DEFAULT_RECIPE.name}", "iteration": 4200}
    save_weights(model, own, info)
    assert warm_start_overrides(DEFAULT_RECIPE, own)[0] == [f"model.pretrained={own}", "run.start_iteration=4200"]
    # train+val shares the long recipe's schedule: it continues it from the long run's weights
    trainval = REPO / "training" / "bevanet-s_camvid-480x360-trainval.yaml"
    assert warm_start_overrides(trainval, own)[0] == [f"model.pretrained={own}", "run.start_iteration=4200"]
    # the held-out recipe validates on 0006R0, which the long run trained on: random weights
    heldout = REPO / "training" / "bevanet-s_camvid-480x360-heldout.yaml"
    overrides, why = warm_start_overrides(heldout, own)
    assert overrides == [] and "0006R0" in why, why
    other = tmp_path / "other.safetensors"
    info.extra = {"recipe": "training/bevanet-s_camvid-480x360.yaml", "iteration": 1350}
    save_weights(model, other, info)
    assert warm_start_overrides(DEFAULT_RECIPE, other)[0][-1] == "run.start_iteration=0"


def test_long_run_driver_starts_from_the_committed_weights_then_resumes(camvid_subset, tmp_path):
    import yaml

    data = camvid_subset(tmp_path / "data", train=2, val=2)
    recipe = yaml.safe_load((REPO / "training" / "bevanet-s_camvid-480x360-long.yaml").read_text())
    # validated on frames of its own training drives, as the long recipe is: the committed weights
    # may start it (a recipe that held a drive out would start from random weights)
    recipe["data"].update(
        root=str(data), base_size=128, crop_size=[128, 96], workers=0, train_list="train.lst", val_list="train.lst"
    )
    recipe["optim"].update(batch_size=2, iterations=4)
    recipe["run"].update(val_every=0, val_limit=1, checkpoint_every=1)
    path = tmp_path / "tiny-long.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cmd = [
        sys.executable,
        "scripts/train_default_model.py",
        "--recipe",
        str(path),
        "--runs",
        str(tmp_path / "runs"),
        "--set",
        "optim.iterations=2",
    ]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "starting from" in first.stdout and "at the start of the schedule" in first.stdout
    assert "initialised from" in first.stdout  # the committed weights were loaded
    run = tmp_path / "runs" / "tiny-long"
    assert (run / "last.pt").is_file() and (run / "best.safetensors").is_file()
    cmd[-1] = "optim.iterations=4"
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming" in second.stdout and "resumed from" in second.stdout and "at iteration 2/4" in second.stdout
    # the run's latest average of the weights ships from its training checkpoint, with its iteration
    out, logs = tmp_path / "shipped.safetensors", tmp_path / "logs"
    shipped = _ship(run / "last.pt", out, data, logs, "--force", "--recipe", str(path))
    assert shipped.returncode == 0, shipped.stderr[-2000:]
    assert "(iteration 4)" in shipped.stdout
    _, info = read_checkpoint(out)
    assert info.extra["iteration"] == 4 and "val_miou" in info.extra
    assert (logs / "tiny-long" / "train.log.jsonl").is_file()


def test_a_fresh_run_directory_keeps_the_committed_log_history(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_default_model", REPO / "scripts" / "train_default_model.py")
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    committed = tmp_path / "logs"
    committed.mkdir()
    (committed / "console.log").write_text("[train] 10/100\n[val] iteration 20\n")
    (committed / "train.log.jsonl").write_text('{"iteration": 20}\n')

    empty = tmp_path / "empty"
    empty.mkdir()
    driver.seed_logs(empty, committed)
    assert (empty / "console.log").read_text() == "[train] 10/100\n[val] iteration 20\n"
    assert (empty / "train.log.jsonl").read_text() == '{"iteration": 20}\n'

    # a shell redirect made console.log before the driver ran, with a line of the caller's own
    redirected = tmp_path / "redirected"
    redirected.mkdir()
    (redirected / "console.log").write_text("restarted by hand\n")
    driver.seed_logs(redirected, committed)
    assert (redirected / "console.log").read_text() == "[train] 10/100\n[val] iteration 20\nrestarted by hand\n"
    driver.seed_logs(redirected, committed)  # a second start before the first checkpoint: history once
    assert (redirected / "console.log").read_text().count("[val] iteration 20") == 1


def test_a_train_and_val_run_ships_with_its_held_out_twin_as_its_figure(shared_data, tmp_path):
    # a small CamVid copy with a frame of each drive: 0001TP and 0006R0 in train, 0016E5 in val
    src, data = shared_data / "camvid", tmp_path / "camvid"
    lines = (src / "train.lst").read_text().splitlines()
    chosen = {
        "train.lst": [lines[0], next(line for line in lines if "0006R0" in line)],
        "val.lst": (src / "val.lst").read_text().splitlines()[:1],
    }
    for name, pairs in chosen.items():
        for rel in " ".join(pairs).split():
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, data / rel)
        (data / name).write_text("\n".join(pairs) + "\n")
    out = tmp_path / "shipped.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, out)
    run = tmp_path / "bevanet-s_camvid-480x360-trainval"
    run.mkdir()
    shutil.copy(DEFAULT_WEIGHTS, run / "best.safetensors")
    recipe = ("--recipe", "training/bevanet-s_camvid-480x360-trainval.yaml")
    # val is in its training data: a tie on val ships, and the held-out run's figure goes with it
    shipped = _ship(run, out, data, tmp_path / "logs", *recipe, "--proxy", str(DEFAULT_WEIGHTS))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert "trains on val's frames" in shipped.stdout
    proxy = read_checkpoint(out)[1].extra["proxy"]
    assert proxy["held_out"] == ["0006R0"] and 0 <= proxy["heldout_miou"] <= 100
    # a broken run (far below the shipped model even on frames it trained on) is refused
    torch.manual_seed(0)
    save_weights(
        build_model("bevanet_s", num_classes=11), run / "best.safetensors", read_checkpoint(DEFAULT_WEIGHTS)[1]
    )
    refused = _ship(run, out, data, tmp_path / "logs", *recipe)
    assert refused.returncode == 1 and "below the shipped model on val" in refused.stdout, refused.stdout


def test_the_proxy_figure_alone_is_refreshed_keeping_tensors_and_calibration(shared_data, tmp_path):
    # a CamVid copy holding one frame of the held-out drive 0006R0
    src, data = shared_data / "camvid", tmp_path / "camvid"
    pairs = [next(line for line in (src / "train.lst").read_text().splitlines() if "0006R0" in line)]
    pairs += (src / "val.lst").read_text().splitlines()[:1]
    for rel in " ".join(pairs).split():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, data / rel)
    (data / "train.lst").write_text(pairs[0] + "\n")
    (data / "val.lst").write_text(pairs[1] + "\n")
    out = tmp_path / "shipped.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, out)
    state, before = read_checkpoint(DEFAULT_WEIGHTS)
    twin = tmp_path / "twin.safetensors"
    info = read_checkpoint(DEFAULT_WEIGHTS)[1]
    info.extra = {"iteration": 4321, "recipe": "training/bevanet-s_camvid-480x360-heldout.yaml"}
    save_weights(build_model("bevanet_s", num_classes=11), twin, info)
    refreshed = _ship_proxy(out, data, twin)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert "at iteration 4321" in refreshed.stdout and "was " in refreshed.stdout
    new_state, after = read_checkpoint(out)
    assert after.extra["proxy"]["iteration"] == 4321 and after.extra["proxy"]["held_out"] == ["0006R0"]
    assert after.extra["proxy"]["recipe"] == "training/bevanet-s_camvid-480x360-heldout.yaml"
    assert {k: v for k, v in after.extra.items() if k != "proxy"} == {
        k: v for k, v in before.extra.items() if k != "proxy"
    }  # the calibration, val figure and recipe are kept
    assert all(torch.equal(state[k], new_state[k]) for k in state)
    # a model whose recipe does not train on val has its own honest figure: no proxy written
    train_only = tmp_path / "train-only.safetensors"
    info.extra = {"recipe": "training/bevanet-s_camvid-480x360-long.yaml"}
    save_weights(build_model("bevanet_s", num_classes=11), train_only, info)
    refused = _ship_proxy(train_only, data, twin)
    assert refused.returncode == 2 and "does not train on val" in refused.stderr
    assert "proxy" not in read_checkpoint(train_only)[1].extra

    # the twin's run directory: its checkpoint's average of the weights, with the curve validated on
    # the way and whether it is flat by its recipe's rule (under 0.5 over the last 2,000 iterations)
    from bevanet_core.training.checkpointing import save_training_checkpoint
    from bevanet_core.training.config import load_config

    heldout = "training/bevanet-s_camvid-480x360-heldout.yaml"
    cfg = load_config(str(REPO / heldout), [])
    assert (cfg.run.plateau_window, cfg.run.plateau_gain) == (2000, 0.5)
    model = build_model("bevanet_s", num_classes=11, aux_heads=True)
    info.extra = {}  # as the twin's own checkpoint: the recipe is the one the record named before
    curve = [(2000, 35.0), (3000, 36.8), (4000, 37.2), (5000, 37.1)]
    history = [{"iteration": i, "val_miou": v, "val_miou_raw_weights": v - 1} for i, v in curve]
    run = tmp_path / "runs" / "bevanet-s_camvid-480x360-heldout"
    run.mkdir(parents=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    save_training_checkpoint(run / "last.pt", model, optimizer, 5000, 37.2, cfg, info, history)
    refreshed = _ship_proxy(out, data, run)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    record = read_checkpoint(out)[1].extra["proxy"]
    assert record["iteration"] == 5000 and record["recipe"] == heldout
    assert record["curve"] == [[i, v] for i, v in curve]
    # best up to 3,000 is 36.8, best after it 37.2: +0.40, flat
    assert record["plateau"] == {"window": 2000, "gain": 0.4, "min_gain": 0.5, "flat": True}
    assert "rose +0.40 over the last 2000 iterations: flat" in refreshed.stdout
    history.append({"iteration": 5200, "val_miou": 38.0})
    save_training_checkpoint(run / "last.pt", model, optimizer, 5200, 38.0, cfg, info, history)
    refreshed = _ship_proxy(out, data, run)
    assert read_checkpoint(out)[1].extra["proxy"]["plateau"]["flat"] is False
    assert "still rising" in refreshed.stdout


def _ship_proxy(out: Path, data: Path, proxy: Path):
    return subprocess.run(
        [sys.executable, "scripts/ship_default_model.py", "--out", str(out), "--data", str(data)]
        + ["--proxy", str(proxy), "--proxy-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
