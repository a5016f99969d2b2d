"""benchmarks/bench_train.py runs end to end (--quick): the engine before, taken from git history,
beside the current one, on real CamVid. Speed itself is the benchmark's business, not a test's."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_train_quick_compares_the_engine_before_with_the_current_one(shared_data, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_train.py",
            "--quick",
            "--data",
            str(shared_data / "camvid"),
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert set(rows) == {"before-fp32", "before-bf16", "fused-objective"}
    assert report["reference"] in ("before-fp32", "before-bf16") and report["init"] == "shipped"
    fused = rows["fused-objective"]
    assert fused["precision"] == rows[report["reference"]]["precision"] and fused["s_per_iter"] > 0
    # same start, same first batch, same objective up to float rounding: the first losses agree
    assert fused["loss_first_rel_diff"] < 1e-3, fused
    assert len(report["losses"]["before-fp32"]) == 5
