"""bevanet-bench: report keys (pipeline + authors' reference), JSON and plot, argument errors;
the one timing core (bevanet_core.timing) and the machine description the figures carry."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from bevanet_core.cli.bench import main as bench_main
from bevanet_core.hardware import machine
from bevanet_core.timing import latency_stats, summarize, time_call, time_calls

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_summarize_percentiles():
    out = summarize(list(range(1, 101)), batch=2)
    assert out["latency_ms"]["p50"] == pytest.approx(50.5)
    assert out["latency_ms"]["p90"] == pytest.approx(90.1)
    assert out["latency_ms"]["p99"] == pytest.approx(99.01)
    assert out["fps"] == pytest.approx(2 * 1000 / 50.5) and out["runs"] == 100


def test_time_calls_warms_up_untimed_and_syncs_before_each_clock_stop():
    events = []

    def fn():
        events.append("call")
        return len(events)

    times = time_calls(fn, runs=3, warmup=2, sync=lambda: events.append("sync"))
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert events == ["call", "call", "sync", "call", "sync", "call", "sync", "call", "sync"]
    ms, out = time_call(lambda: "mask")
    assert out == "mask" and ms >= 0


def test_latency_stats_interpolate_and_name_an_empty_list():
    stats = latency_stats([4.0, 1.0, 3.0, 2.0])
    assert stats["n"] == 4 and stats["p50"] == pytest.approx(2.5) and stats["p95"] == pytest.approx(3.85)
    assert (stats["min"], stats["max"], stats["mean"]) == (1.0, 4.0, 2.5)
    empty = latency_stats([])
    assert empty["n"] == 0 and math.isnan(empty["p50"]) and math.isnan(empty["p99"])


def test_every_speed_figure_comes_from_the_one_timing_core():
    """bevanet-bench, bevanet-speed, the runtime matrix and the node benchmark time calls with
    bevanet_core.timing and compute no percentile of their own."""
    places = {
        "bevanet_core/runtime/benchmark.py": "from ..timing import",
        "bevanet_core/cli/bench.py": "from ..runtime.benchmark import",
        "bevanet_core/cli/speed.py": "from ..runtime.benchmark import",
        "benchmarks/bench_runtime.py": "from bevanet_core.timing import",
        "benchmarks/bench_node.py": "from bevanet_core.timing import",
    }
    for path, uses in places.items():
        text = (REPO / path).read_text()
        assert uses in text, path
        assert not re.search(r"percentile\(|statistics\.quantiles|\* 1e3\b|\* 1000\.0\b", text), path


def test_the_machine_description_names_cpu_simd_cores_and_threads():
    env = machine("cpu")
    assert {"torch", "python", "cpu", "cpu_simd", "cpu_cores", "torch_threads"} <= set(env)
    assert env["cpu_simd"].startswith(env["cpu"]) and env["torch_threads"] >= 1


def test_bench_cli_writes_json_with_reference_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = bench_main(
        [
            "--random-weights",
            "--variant",
            "bevanet_s",
            "--input-size",
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
        (["--input-size", "100x64"], "divisible by 8"),
        (["--input-size", "64x64", "--batch", "0"], "at least 1"),
        (["--input-size", "64x64", "--backend", "tensorrt", "--device", "cuda"], "CUDA|tensorrt"),
        (["--input-size", "64x64", "--backend", "torch", "--precision", "int8"], "int8: the onnxruntime, openvino"),
        (["--variant", "pidnet_s"], "the shipped model is bevanet_s, not pidnet_s: .* --random-weights"),
        (["--random-weights", "--weights", str(REPO / "bevanet_core/weights/bevanet_s_camvid.safetensors")], "drop"),
    ],
)
def test_bench_cli_errors(args, match, capsys):
    try:
        code = bench_main(args + ["--runs", "1", "--warmup", "0", "--no-reference"])
    except SystemExit as exc:  # refused by the parser
        code = exc.code
    assert code == 2
    import re

    assert re.search(match, capsys.readouterr().err)


def test_bench_times_the_shipped_model_unless_told_otherwise(tmp_path, capsys):
    """Without --weights, bevanet-bench times the shipped model at its own input size, like
    every other tool; --random-weights times a seeded untrained network."""
    from bevanet_core.checkpoint import DEFAULT_WEIGHTS, read_checkpoint

    out = tmp_path / "bench.json"
    argv = ["--backend", "torch", "--runs", "1", "--warmup", "0", "--no-reference", "--json", str(out)]
    assert bench_main(argv) == 0
    report = json.loads(out.read_text())
    info = read_checkpoint(DEFAULT_WEIGHTS)[1]
    assert report["weights"] == str(DEFAULT_WEIGHTS) and report["variant"] == info.variant
    assert report["size"] == list(info.input_size)
    assert bench_main(argv + ["--random-weights", "--input-size", "64x48"]) == 0
    report = json.loads(out.read_text())
    assert report["weights"].startswith("seeded random bevanet_s") and report["size"] == [64, 48]
