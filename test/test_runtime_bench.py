"""bevanet-bench: report keys (pipeline + authors' reference), JSON and plot, argument errors."""

from __future__ import annotations

import json

import pytest

from bevanet_core.cli.bench import main as bench_main
from bevanet_core.runtime.benchmark import summarize

pytestmark = pytest.mark.usefixtures("one_thread")


def test_summarize_percentiles():
    out = summarize(list(range(1, 101)), batch=2)
    assert out["latency_ms"]["p50"] == pytest.approx(50.5)
    assert out["latency_ms"]["p90"] == pytest.approx(90.1)
    assert out["latency_ms"]["p99"] == pytest.approx(99.01)
    assert out["fps"] == pytest.approx(2 * 1000 / 50.5) and out["runs"] == 100


def test_bench_cli_writes_json_with_reference_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = bench_main(
        [
            "--variant",
            "bevanet_s",
            "--size",
            "64x64",
            "--frame-size",
            "101x77",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--batch",
            "2",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    for block in (report, report["reference"]):
        assert set(block["latency_ms"]) >= {"p50", "p90", "p99"} and block["fps"] > 0
    assert report["batch"] == 2 and report["reference"]["batch"] == 1
    assert report["frame_size"] == [101, 77] and report["size"] == [64, 64]
    assert set(report["stages_ms_p50"]) == {"preprocess", "inference", "postprocess"}
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert "authors' protocol" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,match",
    [
        (["--size", "100x64"], "divisible by 8"),
        (["--size", "64x64", "--batch", "0"], "at least 1"),
        (["--size", "64x64", "--backend", "tensorrt", "--device", "cuda"], "CUDA|tensorrt"),
        (["--size", "64x64", "--precision", "int8"], "int8: the onnxruntime, openvino"),
    ],
)
def test_bench_cli_errors(args, match, capsys):
    assert bench_main(args + ["--runs", "1", "--warmup", "0", "--no-reference"]) == 2
    import re

    assert re.search(match, capsys.readouterr().err)
