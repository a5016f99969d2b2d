"""The monotone confidence curve fitted after the temperature: the fit, its record in the weights'
metadata, every backend's published confidence and bevanet-calibrate's cross-fitted figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bevanet_core.checkpoint import ModelInfo, read_checkpoint, save_weights
from bevanet_core.evaluation.calibration import CalibrationMeter, fit_temperature, max_prob_and_correct
from bevanet_core.evaluation.confidence_curve import (
    apply_curve,
    curve_of,
    curve_record,
    curve_table,
    fit_isotonic,
)
from bevanet_core.imaging.geometry import plan_resize
from bevanet_core.imaging.processing import Postprocessor
from bevanet_core.models import build_model
from bevanet_core.runtime import Segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


def _bent(n=200_000, seed=0):
    """Confidences whose accuracy is conf ** 3: over-confident in the middle, right at the ends.
    No temperature fixes that everywhere; a monotone curve does."""
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, generator=g) * 0.7 + 0.3
    right = torch.rand(n, generator=g) < conf**3
    return conf, right


def _ece(conf, right, bins=15):
    c, r = conf.double().numpy(), right.numpy().astype(np.float64)
    b = np.minimum((c * bins).astype(int), bins - 1)
    gap = np.abs(np.bincount(b, weights=r, minlength=bins) - np.bincount(b, weights=c, minlength=bins))
    return gap.sum() / c.size


def test_isotonic_curve_removes_a_bent_calibration_error_on_new_pixels():
    conf, right = _bent(seed=0)
    x, y = fit_isotonic(conf, right)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0) and 0 <= y[0] and y[-1] <= 1
    test_conf, test_right = _bent(seed=1)  # fitted on one sample, measured on another
    before, after = _ece(test_conf, test_right), _ece(apply_curve(test_conf, (x, y)), test_right)
    assert before > 0.1 and after < 0.01, (before, after)
    # monotone: the order of the confidences is kept (ties aside)
    mapped = apply_curve(test_conf, (x, y))
    order = torch.argsort(test_conf)
    assert torch.all(torch.diff(mapped[order]) >= -1e-12)
    with pytest.raises(ValueError, match="no valid pixels"):
        fit_isotonic(torch.empty(0), torch.empty(0, dtype=torch.bool))


def test_curve_beats_the_temperature_alone_on_bent_logits():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(100_000, 5, generator=g) * 3
    # a fifth of the labels are noise: right at most 84 % of the time however sure the network
    # is, a ceiling that no temperature draws without spoiling the unsure pixels
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=g)[:, 0]
    noise = torch.rand(len(labels), generator=g) < 0.2
    labels[noise] = torch.randint(0, 5, (int(noise.sum()),), generator=g)
    t = fit_temperature(z, labels)
    conf, right = max_prob_and_correct(z, labels, t)
    curve = fit_isotonic(conf[:50_000], right[:50_000])
    meter = CalibrationMeter(5, {"t": t, "curve": t}, sample_per_frame=0, curves={"curve": curve})
    meter.add_pixels(z[50_000:], labels[50_000:])
    ece = meter.report()["ece"]
    assert ece["curve"] < 0.01 and ece["curve"] < ece["t"] / 2, ece


def test_curve_of_reads_the_record_and_refuses_corrupt_knots():
    curve = (np.array([0.2, 0.5, 0.9]), np.array([0.1, 0.4, 0.95]))
    info = ModelInfo.default("bevanet_s", 11, extra={"calibration": {"temperature": 1.1, "curve": curve_record(curve)}})
    x, y = curve_of(info)
    assert np.allclose(x, curve[0]) and np.allclose(y, curve[1])
    assert curve_of(ModelInfo.default("bevanet_s", 11)) is None
    for bad in (
        {"confidence": [0.5, 0.2], "probability": [0.1, 0.2]},  # not sorted
        {"confidence": [0.2, 0.5], "probability": [0.3, 1.5]},  # past 1
        {"confidence": [0.2, 0.5], "probability": [0.3]},  # lengths differ
        {"confidence": "high"},
        [0.1, 0.2],
    ):
        info = ModelInfo.default("bevanet_s", 11, extra={"calibration": {"temperature": 1.0, "curve": bad}})
        with pytest.raises(ValueError, match="calibration curve"):
            curve_of(info)


def test_table_maps_every_8_bit_level_and_the_postprocessor_applies_it():
    curve = (np.array([0.3, 0.6, 1.0]), np.array([0.1, 0.5, 0.9]))
    table = curve_table(curve)
    assert table.shape == (256,) and table.dtype == np.uint8
    assert table[255] == round(0.9 * 255) and table[0] == round(0.1 * 255)
    assert np.all(np.diff(table.astype(int)) >= 0)
    torch.manual_seed(0)
    logits = torch.randn(1, 11, 6, 8) * 4
    plan = plan_resize((64, 48), (64, 48), "stretch")
    plain = Postprocessor("logits", temperature=1.3)(logits, [plan], True)[0]
    mapped = Postprocessor("logits", temperature=1.3, confidence_table=table)(logits, [plan], True)[0]
    assert torch.equal(plain[0], mapped[0])  # the mask does not change
    assert torch.equal(mapped[1], torch.from_numpy(table)[plain[1].long()])
    with pytest.raises(ValueError, match="256 uint8"):
        Postprocessor("logits", confidence_table=np.zeros(10, np.uint8))


def _weights_with_curve(tmp_path, curve, suffix=""):
    model = build_model("bevanet_s", num_classes=11).eval()
    record = {"temperature": 1.2, "curve": curve_record(curve)}
    info = ModelInfo.default("bevanet_s", 11, input_size=(128, 128), extra={"calibration": record})
    path = tmp_path / f"m{suffix}.safetensors"
    save_weights(model, path, info)
    return model, info, path


def test_every_backend_and_tta_publish_the_curved_confidence(tmp_path):
    curve = (np.array([0.2, 0.6, 1.0]), np.array([0.05, 0.3, 0.8]))
    model, info, path = _weights_with_curve(tmp_path, curve)
    frame = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    table = torch.from_numpy(curve_table(curve))
    seg = Segmenter(weights=str(path), backend="torch")
    res = seg.segment(frame, confidence=True, logits=True)
    up = seg.frame_logits(res.logits, 128, 128)
    tempered = (torch.softmax(up / 1.2, dim=0).max(dim=0).values * 255).round().to(torch.uint8)
    want = table[tempered.long()].numpy()
    assert np.abs(res.confidence.astype(int) - want.astype(int)).max() <= 1
    assert res.confidence.max() <= round(0.8 * 255)  # the curve's top
    from bevanet_core.runtime.tta import TestTimeAugmentation

    tta = TestTimeAugmentation(seg, scales=(1.0,), flip=False)
    assert np.abs(tta.segment(frame, confidence=True).confidence.astype(int) - want.astype(int)).max() <= 1
    pytest.importorskip("onnxruntime")
    from bevanet_core.export import export_onnx

    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, info, onnx_path, input_size=(128, 128))
    ort = Segmenter(weights=str(onnx_path), backend="onnxruntime")
    assert np.allclose(ort.confidence_curve[1], curve[1])
    conf = ort.segment(frame, confidence=True).confidence
    assert np.abs(conf.astype(int) - res.confidence.astype(int)).max() <= 2


def test_calibrate_fits_a_curve_reports_the_cross_fitted_ece_and_eval_applies_it(tmp_path, shared_data, capsys):
    from bevanet_core.cli.calibrate import main as calibrate_main
    from bevanet_core.cli.evaluate import main as eval_main

    torch.manual_seed(3)
    path = tmp_path / "m.safetensors"
    save_weights(build_model("bevanet_s", num_classes=11).eval(), path, ModelInfo.default("bevanet_s", 11))
    common = ["--dataset", "camvid", "--root", str(shared_data / "camvid"), "--split", "heldout"]
    common += ["--max-frames", "2", "--input-size", "64x48", "--weights", str(path)]
    out = tmp_path / "cal.json"
    assert calibrate_main([*common, "--trained-on", "heldout-train", "--write", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cross-fitted" in text and "knots" in text
    record = json.loads(out.read_text())["calibration"]
    assert record["method"] == "temperature+curve"
    assert set(record["ece_cross_fitted"]) == {"before", "temperature", "after"}
    assert all(0 <= v < 1 for v in record["ece_cross_fitted"].values())
    _, info = read_checkpoint(path)
    x, y = curve_of(info)
    assert len(x) == len(record["curve"]["confidence"]) >= 1
    report = tmp_path / "eval.json"
    assert eval_main([*common, "--json", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["calibration"]["method"] == "temperature+curve"
    # the random network is right on few pixels: its calibrated confidence follows suit
    assert r["mean_confidence"]["after"] < r["mean_confidence"]["before"]
    assert r["ece"]["after"] < r["ece"]["before"]
