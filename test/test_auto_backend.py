"""backend='auto': which backends are probed, that the fastest measured one is kept, that the
choice is logged and cached per machine, model, size and precision."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bevanet_core.checkpoint import ModelInfo
from bevanet_core.runtime import Segmenter, SegmenterConfig, auto, int8_guard
from bevanet_core.runtime.auto import candidate_backends, candidate_pipelines, describe, label, pick

SIZE = (256, 128)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_candidates_follow_precision_device_weights_and_installs():
    cpu = torch.device("cpu")
    names, skipped = candidate_backends(SegmenterConfig(), cpu)
    assert "torch" in names and skipped["tensorrt"] == "needs CUDA"
    names, skipped = candidate_backends(SegmenterConfig(precision="int8"), cpu)
    assert "torch" not in names and skipped["torch"] == "no int8"
    names, skipped = candidate_backends(SegmenterConfig(precision="fp16"), cpu)
    assert skipped["torch"] == "no fp16 on the CPU"
    names, skipped = candidate_backends(SegmenterConfig(weights="m.onnx"), cpu)
    assert "torch" not in names
    names, _ = candidate_backends(SegmenterConfig(weights="m.engine"), cpu)
    assert names == []


def test_auto_keeps_the_fastest_logs_why_and_caches(tmp_path, caplog, monkeypatch):
    pytest.importorskip("onnxruntime")
    cfg = SegmenterConfig(input_size=SIZE, num_threads=1, precision="fp32", cache_dir=str(tmp_path))
    assert cfg.backend == "auto"  # the default
    with caplog.at_level(logging.INFO, logger="bevanet_core.runtime.auto"):
        seg = Segmenter(cfg)
    rec = seg.backend_choice
    assert rec["backend"] == seg.backend.name and rec["precision"] == "fp32"
    assert label(rec["backend"], "fp32") == pick(rec["probe_ms"])
    assert {"torch fp32", "onnxruntime fp32"} <= set(rec["probe_ms"])
    assert "tensorrt" in rec["skipped"]
    assert f"chose {rec['backend']}" in caplog.text and "ms" in caplog.text
    files = list((tmp_path / "auto").glob("probe-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["backend"] == rec["backend"]
    assert seg.segment(torch.zeros(64, 80, 3, dtype=torch.uint8).numpy()).mask.shape == (64, 80)

    # same machine, model, size and threads: no probe, the cached choice is built
    again = Segmenter(cfg)
    assert again.backend.name == rec["backend"] and again.backend_choice["cached"]
    assert "probe cached in" in describe(again.backend_choice)
    # another size is another key
    other = Segmenter(SegmenterConfig(input_size=(128, 64), num_threads=1, precision="fp32", cache_dir=str(tmp_path)))
    assert "cached" not in other.backend_choice
    assert len(list((tmp_path / "auto").glob("probe-*.json"))) == 2
    monkeypatch.setenv("BEVANET_AUTO_REPROBE", "1")
    assert "cached" not in Segmenter(cfg).backend_choice


def test_a_backend_that_cannot_take_the_model_is_skipped(tmp_path):
    pytest.importorskip("onnxruntime")

    class NoOnnx(torch.nn.Module):
        """Adaptive pooling to a size that does not divide the input: no ONNX export."""

        output_stride = 8

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = torch.nn.functional.adaptive_avg_pool2d(self.conv(x), (5, 7))
            return torch.nn.functional.interpolate(y, size=(x.shape[2] // 8, x.shape[3] // 8))

    info = ModelInfo.default("bevanet_s", 4, input_size=(64, 48))
    seg = Segmenter.from_model(NoOnnx(), info, cache_dir=str(tmp_path))
    assert seg.backend.name == "torch"
    assert "onnxruntime fp32" in seg.backend_choice["skipped"]


def test_a_cached_choice_that_cannot_be_built_is_probed_again(tmp_path, caplog, monkeypatch):
    pytest.importorskip("onnxruntime")
    cfg = SegmenterConfig(input_size=SIZE, num_threads=1, precision="fp32", cache_dir=str(tmp_path))
    Segmenter(cfg)
    (cache_file,) = (tmp_path / "auto").glob("probe-*.json")
    record = json.loads(cache_file.read_text())
    record["backend"] = "onnxruntime"
    cache_file.write_text(json.dumps(record))
    from bevanet_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

    def broken(*args, **kwargs):
        raise RuntimeError("export unsupported at this size")

    monkeypatch.setattr(OnnxRuntimeBackend, "create", broken)
    with caplog.at_level(logging.INFO, logger="bevanet_core.runtime.auto"):
        seg = Segmenter(cfg)
    assert "cached" not in seg.backend_choice and seg.backend.name != "onnxruntime"
    assert "cannot be built" in caplog.text and "probing again" in caplog.text


def test_the_size_from_the_weights_metadata_is_part_of_the_key(tmp_path):
    """The same network shipped at two input sizes (none configured): two probes, not one."""
    pytest.importorskip("onnxruntime")
    from bevanet_core.checkpoint import save_weights
    from bevanet_core.models import build_model

    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=4)
    for size in ((128, 64), (96, 64)):
        path = tmp_path / f"m{size[0]}.safetensors"
        save_weights(model, path, ModelInfo.default("bevanet_s", 4, input_size=size))
        seg = Segmenter(SegmenterConfig(weights=str(path), num_threads=1, precision="fp32", cache_dir=str(tmp_path)))
        assert "cached" not in seg.backend_choice, size
    assert len(list((tmp_path / "auto").glob("probe-*.json"))) == 2


def test_pick_wants_a_clear_margin_before_int8_or_a_change():
    assert pick({"torch fp32": 100.0, "openvino fp32": 80.0, "openvino int8": 75.0}) == "openvino fp32"
    assert pick({"torch fp32": 100.0, "openvino fp32": 80.0, "openvino int8": 40.0}) == "openvino int8"
    assert pick({"onnxruntime fp32": 80.0, "openvino fp32": 79.0}) == "openvino fp32"


def test_int8_candidates_only_where_precision_is_left_to_auto():
    cpu = torch.device("cpu")
    pairs, _ = candidate_pipelines(SegmenterConfig(), cpu)
    assert ("torch", "fp32") in pairs and ("torch", "int8") not in pairs
    assert {p for _, p in pairs} == ({"fp32", "int8"} if ("onnxruntime", "fp32") in pairs else {"fp32"})
    pairs, _ = candidate_pipelines(SegmenterConfig(precision="fp32"), cpu)  # an explicit choice turns it off
    assert {p for _, p in pairs} == {"fp32"}


def test_int8_out_of_the_box_is_guarded_cached_and_reused(tmp_path, caplog, monkeypatch):
    """First start: quantized from the shipped frames, checked against fp32, chosen when the probe
    says it is clearly fastest, and logged; second start: the cached choice, nothing rebuilt."""
    pytest.importorskip("onnxruntime")
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in int8_guard.frame_files(int8_guard.INT8_FRAMES / "calibration")[::6]:  # 4 of them: quick
        (calib / f.name).symlink_to(f)
    cfg = SegmenterConfig(input_size=SIZE, calibration_images=str(calib), cache_dir=str(tmp_path / "cache"))

    def int8_fastest(backends, sizes, runs):  # the speed ranking is the probe's job, tested above
        return {k: 10.0 if k.endswith("int8") else 100.0 for k in backends}

    monkeypatch.setattr(auto, "probe", int8_fastest)
    monkeypatch.setattr(int8_guard, "MIN_AGREEMENT", 0.5)
    monkeypatch.setattr(int8_guard, "MAX_CONFIDENCE_GAP", 1.0)  # a random network: any confidence
    with caplog.at_level(logging.INFO, logger="bevanet_core.runtime.auto"):
        seg = Segmenter(cfg)
    rec = seg.backend_choice
    assert rec["precision"] == "int8" and seg.config.precision == "int8" and seg.pipeline["precision"] == "int8"
    assert set(rec["guard"]) == {k for k in rec["probe_ms"] if k.endswith("int8")} and rec["guard"]
    assert all(0.5 <= v <= 1.0 for v in rec["guard"].values())
    assert "int8 agreement with fp32 on the check frames" in caplog.text and "start took" in caplog.text
    int8_files = [p for p in (tmp_path / "cache" / "onnx").glob("*.onnx") if "int8" in p.name]
    assert len(int8_files) == 1
    stamp = int8_files[0].stat().st_mtime_ns
    assert (seg.segment(torch.zeros(64, 80, 3, dtype=torch.uint8).numpy()).mask.shape) == (64, 80)

    # second start: no export, no quantization, no probe, no guard
    def refuse(*args, **kwargs):
        raise AssertionError("rebuilt on the second start")

    import bevanet_core.export.onnx as onnx_export
    import bevanet_core.export.precision as precision

    monkeypatch.setattr(onnx_export, "export_onnx", refuse)
    monkeypatch.setattr(precision, "quantize_int8", refuse)
    monkeypatch.setattr(auto, "probe", refuse)
    monkeypatch.setattr(int8_guard, "compare", refuse)
    again = Segmenter(cfg)
    assert again.backend_choice["cached"] and again.config.precision == "int8"
    assert again.backend.name == seg.backend.name
    assert int8_files[0].stat().st_mtime_ns == stamp

    # a guard the int8 pipelines fail: they are dropped, with their figure, and fp32 serves
    monkeypatch.setattr(auto, "probe", int8_fastest)
    monkeypatch.setattr(int8_guard, "compare", lambda *a: (0.9, 0.0))
    monkeypatch.setattr(int8_guard, "MIN_AGREEMENT", 0.98)
    strict = Segmenter(cfg)  # the guard's threshold is part of the key: decided again
    rec = strict.backend_choice
    assert rec["precision"] == "fp32" and "cached" not in rec
    assert any("90.00%" in why and "below the 98% guard" in why for why in rec["skipped"].values())

    # labels that agree, but a confidence stretched by quantization: the calibration would not hold
    monkeypatch.setattr(int8_guard, "compare", lambda *a: (0.995, 0.08))
    monkeypatch.setattr(int8_guard, "MAX_CONFIDENCE_GAP", 0.02)
    stretched = Segmenter(cfg).backend_choice
    assert stretched["precision"] == "fp32"
    assert any("differs from" in why and "0.080" in why for why in stretched["skipped"].values())
