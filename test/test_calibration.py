"""Calibration: ECE and error AUROC, the temperature fit, the temperature in the weights'
metadata and in every backend's confidence, bevanet-calibrate and bevanet-eval's report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, ModelInfo, read_checkpoint, save_weights
from bevanet_core.evaluation.calibration import (
    CalibrationMeter,
    auroc_from_histograms,
    fit_temperature,
    temperature_of,
    write_safetensors_metadata,
)
from bevanet_core.imaging.geometry import plan_resize
from bevanet_core.imaging.processing import Postprocessor
from bevanet_core.models import build_model
from bevanet_core.runtime import Segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


def _overconfident(n=120_000, c=5, scale=3.0, seed=0):
    """Logits whose probabilities are calibrated at T = scale: labels drawn from softmax(z / scale)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, c, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(base, dim=1), 1, generator=g)[:, 0]
    return base * scale, labels


def _as_map(z, y, h=300):
    c = z.shape[1]
    return z.t().reshape(c, h, -1).contiguous(), y.reshape(h, -1).numpy().astype(np.uint8)


def test_auroc_from_histograms_matches_the_rank_statistic():
    rng = np.random.default_rng(0)
    right = rng.beta(5, 2, 3000)
    wrong = rng.beta(2, 3, 1000)
    # exact Mann-Whitney U / (n_pos n_neg)
    exact = (right[:, None] > wrong[None, :]).mean() + 0.5 * (right[:, None] == wrong[None, :]).mean()
    bins = 4096
    hr = np.bincount(np.minimum((right * bins).astype(int), bins - 1), minlength=bins)
    hw = np.bincount(np.minimum((wrong * bins).astype(int), bins - 1), minlength=bins)
    assert auroc_from_histograms(hr, hw) == pytest.approx(exact, abs=2e-3)
    assert auroc_from_histograms(hr, np.zeros(bins)) is None


def test_temperature_fit_recovers_the_scale_and_removes_the_calibration_error():
    z, y = _overconfident(scale=3.0)
    meter = CalibrationMeter(5, {"before": 1.0}, sample_per_frame=50_000)
    meter.update(*_as_map(z, y))
    t = fit_temperature(*meter.sample())
    assert t == pytest.approx(3.0, rel=0.08)
    check = CalibrationMeter(5, {"before": 1.0, "after": t}, sample_per_frame=0)
    check.update(*_as_map(z, y))
    r = check.report()
    assert r["ece"]["before"] > 0.1  # over-confident by construction
    assert r["ece"]["after"] < 0.01
    assert r["nll"]["after"] < r["nll"]["before"]
    assert 0.5 < r["error_auroc"]["after"] <= 1.0
    assert r["pixels"] == y.numel()


def test_meter_ignores_unlabelled_pixels_and_checks_sizes():
    z, y = _overconfident(n=600)
    logits, label = _as_map(z, y, h=20)
    label[:10] = 255
    meter = CalibrationMeter(5, {"before": 1.0})
    meter.update(logits, label)
    assert meter.pixels == 300
    with pytest.raises(ValueError, match="sizes differ"):
        meter.update(logits, label[:5])


def test_postprocessor_confidence_is_the_tempered_max_softmax_and_labels_do_not_change():
    torch.manual_seed(0)
    logits = torch.randn(2, 11, 6, 8) * 4
    plan = plan_resize((64, 48), (64, 48), "stretch")
    plain = Postprocessor("logits")(logits[:1], [plan], True)
    hot = Postprocessor("logits", temperature=2.5)(logits[:1], [plan], True)
    assert torch.equal(plain[0][0], hot[0][0])
    up = Postprocessor("logits").upsample_logits(logits[:1], plan)[0]
    want = torch.softmax(up / 2.5, dim=0).max(dim=0).values
    assert (hot[0][1].float() / 255 - want).abs().max() <= 1 / 255 + 1e-6
    assert hot[0][1].float().mean() < plain[0][1].float().mean()  # T > 1 softens
    with pytest.raises(ValueError, match="temperature"):
        Postprocessor("logits", temperature=0.0)


def test_temperature_travels_in_the_safetensors_metadata(tmp_path):
    model = build_model("bevanet_s", num_classes=11).eval()
    info = ModelInfo.default("bevanet_s", 11, input_size=(64, 48))
    path = tmp_path / "m.safetensors"
    save_weights(model, path, info)
    before = path.read_bytes()
    state0, _ = read_checkpoint(path)
    info.extra = {"calibration": {"temperature": 1.7, "fitted_on": "test frames"}}
    write_safetensors_metadata(path, info)
    state1, info1 = read_checkpoint(path)
    assert temperature_of(info1) == 1.7
    assert all(torch.equal(state0[k], state1[k]) for k in state0)
    assert path.read_bytes() != before
    seg = Segmenter(weights=str(path), backend="torch")
    assert seg.temperature == 1.7
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    res = seg.segment(frame, confidence=True, logits=True)
    up = seg.frame_logits(res.logits, 64, 48)
    assert torch.equal(up.argmax(0).to(torch.uint8), torch.from_numpy(res.mask))
    want = torch.softmax(up / 1.7, dim=0).max(dim=0).values.numpy()
    assert np.abs(res.confidence / 255.0 - want).max() <= 1 / 255 + 1e-4
    bad = ModelInfo.default("bevanet_s", 11, extra={"calibration": {"temperature": "hot"}})
    with pytest.raises(ValueError, match="calibration temperature"):
        temperature_of(bad)


def test_exported_onnx_carries_the_temperature(tmp_path):
    pytest.importorskip("onnxruntime")
    from bevanet_core.export import export_onnx

    model = build_model("bevanet_s", num_classes=11).eval()
    info = ModelInfo.default("bevanet_s", 11, extra={"calibration": {"temperature": 1.4}})
    path = tmp_path / "m.onnx"
    export_onnx(model, info, path, input_size=(128, 128))
    seg = Segmenter(weights=str(path), backend="onnxruntime")
    assert seg.temperature == pytest.approx(1.4)


def test_calibrate_writes_the_temperature_and_eval_reports_ece_and_auroc(tmp_path, shared_data, capsys):
    from bevanet_core.cli.calibrate import main as calibrate_main
    from bevanet_core.cli.evaluate import main as eval_main

    weights = tmp_path / "shipped.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    root = shared_data / "camvid"
    out = tmp_path / "cal.json"
    rc = calibrate_main(
        [
            "--dataset",
            "camvid",
            "--root",
            str(root),
            "--split",
            "val",
            "--weights",
            str(weights),
            "--max-frames",
            "2",
            "--input-size",
            "240x184",
            "--write",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    # the shipped model trained on train.lst, which holds val's drive: the record says so
    assert "not unseen" in text
    written = json.loads(out.read_text())
    record = written["calibration"]
    # the fitted temperature minimises the NLL of the sampled pixels: it cannot be higher after
    assert 0 < written["nll"]["after"] <= written["nll"]["before"], written["nll"]
    assert record["split"] == "val" and record["unseen"] is False and record["shared_with_training"] == ["0016E5"]
    _, info = read_checkpoint(weights)
    assert temperature_of(info) == record["temperature"]
    report = tmp_path / "eval.json"
    rc = eval_main(
        [
            "--dataset",
            "camvid",
            "--root",
            str(root),
            "--split",
            "val",
            "--weights",
            str(weights),
            "--max-frames",
            "2",
            "--input-size",
            "240x184",
            "--json",
            str(report),
        ]
    )
    assert rc == 0
    r = json.loads(report.read_text())
    assert set(r["ece"]) == {"before", "after"} and set(r["error_auroc"]) == {"before", "after"}
    assert 0 <= r["ece"]["after"] < 1 and 0.5 < r["error_auroc"]["after"] <= 1
    assert r["temperature"] == record["temperature"]
    assert r["calibration"]["split"] == "val"
    assert "ECE after" in capsys.readouterr().out


def test_calibrate_write_refuses_other_files(tmp_path, shared_data, capsys):
    from bevanet_core.cli.calibrate import main as calibrate_main

    with pytest.raises(SystemExit):
        calibrate_main(["--dataset", "camvid", "--root", str(shared_data / "camvid"), "--split", "val", "--write"])
    assert "--write needs --weights" in capsys.readouterr().err


def test_store_in_carries_a_held_out_runs_temperature_to_the_full_model(tmp_path, shared_data, capsys):
    from bevanet_core.cli.calibrate import main as calibrate_main

    paths = []
    for seed in (1, 2):  # the held-out run and the model trained on everything
        torch.manual_seed(seed)
        path = tmp_path / f"m{seed}.safetensors"
        save_weights(build_model("bevanet_s", num_classes=11).eval(), path, ModelInfo.default("bevanet_s", 11))
        paths.append(path)
    held_out, full = paths
    rc = calibrate_main(
        [
            "--dataset",
            "camvid",
            "--root",
            str(shared_data / "camvid"),
            "--split",
            "heldout",
            "--max-frames",
            "1",
            "--input-size",
            "64x48",
            "--weights",
            str(held_out),
            "--trained-on",
            "heldout-train",
            "--store-in",
            str(full),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "the model never trained on camvid heldout" in capsys.readouterr().out
    _, info = read_checkpoint(full)
    record = info.extra["calibration"]
    assert record["unseen"] is True and record["split"] == "heldout"
    assert str(held_out) in record["fitted_with"] and "held-out run" in record["note"]
    _, untouched = read_checkpoint(held_out)  # no --write: the held-out run's file stays as it was
    assert "calibration" not in untouched.extra
    assert temperature_of(info) == record["temperature"]
