"""One default everywhere: the command-line tools and the node share the backend, precision and
thread defaults, and the reports name the pipeline that actually ran (also through the node)."""

from __future__ import annotations

import argparse
import json

import pytest

from bevanet_core import hardware
from bevanet_core.options import DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_PRECISION
from bevanet_core.serving.params import SPECS, NodeSettings

pytestmark = pytest.mark.usefixtures("one_thread")


def _model_parser():
    from bevanet_core.cli.common import add_model_args

    p = argparse.ArgumentParser()
    add_model_args(p)
    return p


def test_the_tools_and_the_node_share_one_default():
    from bevanet_core.cli.bench import build_parser as bench_parser
    from bevanet_core.runtime import SegmenterConfig
    from bevanet_core.runtime.benchmark import BenchConfig

    node = {name: SPECS[name].default for name in ("backend", "device", "precision", "num_threads")}
    assert node == {
        "backend": DEFAULT_BACKEND,
        "device": DEFAULT_DEVICE,
        "precision": DEFAULT_PRECISION,
        "num_threads": 0,
    }
    for args in (_model_parser().parse_args([]), bench_parser().parse_args([])):
        assert (args.backend, args.device, args.precision, args.threads) == (
            DEFAULT_BACKEND,
            DEFAULT_DEVICE,
            DEFAULT_PRECISION,
            None,
        )
    cfg, bench = SegmenterConfig(), BenchConfig()
    assert (cfg.backend, cfg.precision, cfg.num_threads) == (DEFAULT_BACKEND, DEFAULT_PRECISION, None)
    assert (bench.backend, bench.precision, bench.threads) == (DEFAULT_BACKEND, DEFAULT_PRECISION, None)
    # the node's 0 threads is the runtime's None: both resolve to hardware.default_threads()
    assert NodeSettings().segmenter_config().num_threads is None


def test_default_threads_leave_room_on_a_shared_cpu(monkeypatch):
    for cores, expected in ((1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)):
        monkeypatch.setattr(hardware, "available_cores", lambda n=cores: n)
        assert hardware.default_threads() == expected, cores


def test_a_segmenter_resolves_and_reports_its_threads(monkeypatch, tmp_path):
    import torch

    from bevanet_core.checkpoint import ModelInfo
    from bevanet_core.models import build_model
    from bevanet_core.runtime import Segmenter

    monkeypatch.setattr(hardware, "available_cores", lambda: 4)
    before = torch.get_num_threads()
    try:
        model = build_model("bevanet_s", num_classes=4).eval()
        info = ModelInfo.default("bevanet_s", 4, input_size=(64, 48))
        seg = Segmenter.from_model(model, info, backend="torch", cache_dir=str(tmp_path))
        assert seg.config.num_threads == 2 and torch.get_num_threads() == 2
        pipeline = seg.pipeline
        assert pipeline["backend"] == "torch" and pipeline["precision"] == "fp32" and pipeline["threads"] == 2
        assert pipeline["input_size"] == [64, 48]
    finally:
        torch.set_num_threads(before)


def test_the_node_names_its_pipeline_on_diagnostics_and_the_tools_read_it():
    from bevanet_core.cli.bag_eval import model_meta
    from bevanet_core.serving.model_loading import pipeline_from_values, pipeline_values

    ran = {
        "backend": "openvino",
        "precision": "int8",
        "device": "cpu",
        "threads": 1,
        "weights": "/w/model.safetensors",
        "model_file": "/cache/onnx/m-int8.onnx",
        "variant": "bevanet_s",
        "input_size": [480, 360],
    }
    pairs = pipeline_values(ran) + [("frames_received", "12")]
    assert pipeline_from_values(pairs) == ran
    assert pipeline_from_values([("frames_received", "12")]) is None

    class Local:  # the in-process runtime the tool holds for class names and colours
        info = type("Info", (), {"variant": "bevanet_s", "num_classes": 11, "dataset": "camvid"})()
        input_size = (480, 360)
        pipeline = {"backend": "torch", "precision": "fp32", "threads": 2, "weights": None}

    class Client:
        pipeline = ran

    args = argparse.Namespace(through_node=True, resize="stretch")
    meta = model_meta(Local(), args, Client())
    assert (meta["backend"], meta["precision"], meta["weights"], meta["threads"]) == (
        "openvino",
        "int8",
        "/w/model.safetensors",
        1,
    )
    assert meta["pipeline_from"] == "the node's /diagnostics"
    silent = model_meta(Local(), args, object())
    assert silent["backend"].startswith("unknown") and silent["weights"] is None
    local = model_meta(Local(), argparse.Namespace(through_node=False, resize="stretch"))
    assert local["backend"] == "torch" and local["pipeline_from"] == "this process"


def test_eval_with_no_flags_runs_and_reports_what_the_node_runs(shared_data, tmp_path, monkeypatch, capsys):
    """bevanet-eval with no backend, precision or thread flag: the pipeline of a node started with
    no parameters (backend auto's cached choice is shared, as on one machine)."""
    root = shared_data / "camvid"
    if not (root / "val").is_dir():
        pytest.skip(f"CamVid val missing under {root}")
    from bevanet_core.cli.evaluate import main as eval_main
    from bevanet_core.runtime import Segmenter

    monkeypatch.setenv("BEVANET_CACHE", str(tmp_path / "cache"))
    # the export, quantization and probe of the other backends cost minutes at 480x360 on two
    # cores (test/test_auto_backend.py covers them); here only the shared path to the choice counts
    from bevanet_core.runtime import auto

    monkeypatch.setattr(auto, "_importable", lambda module: False)
    node = Segmenter(NodeSettings().segmenter_config()).pipeline
    report = tmp_path / "eval.json"
    rc = eval_main(
        ["--dataset", "camvid", "--root", str(root), "--split", "val", "--max-frames", "1", "--json", str(report)]
    )
    assert rc == 0
    got = json.loads(report.read_text())
    for key in ("backend", "precision", "threads", "weights", "input_size"):
        assert got[key] == node[key], key
    out = capsys.readouterr().out
    assert f"pipeline: {node['backend']} {node['precision']}, {node['threads']} thread(s)" in out
