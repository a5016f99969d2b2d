"""scripts/gpu_check.sh: its CPU --quick run writes both reports with every row, its full row
list covers what the GPU run must measure, and --prepare makes the JPEG-95 CamVid val copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


def test_quick_run_writes_json_and_markdown(shared_data, tmp_path):
    camvid = shared_data / "camvid"
    if not (camvid / "val.lst").is_file():
        pytest.skip(f"CamVid val missing under {camvid}")
    out = tmp_path / "out"
    cmd = ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--quick", "--device", "cpu"]
    cmd += ["--data", str(camvid), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    labels = [r["label"] for r in report["speed"]]
    assert labels == [label for label, _ in gpu_check.speed_rows("cpu", quick=True)]
    assert not [r for r in report["speed"] if "error" in r]
    refs = [r for r in report["speed"] if "reference" in r]
    assert {r["variant"] for r in refs} == {"bevanet", "bevanet_s"}
    assert all(r["speedup_vs_reference"] > 0 for r in report["speed"])
    assert set(report["miou"]) == {"fp32", "bf16"} and report["miou"]["fp32"]["miou"] > 0
    md = (out / "gpu_check.md").read_text()
    assert "authors' protocol" in md and "CamVid val mIoU" in md


def test_full_rows_cover_the_gpu_paths():
    rows = dict(gpu_check.speed_rows("cuda", quick=False))
    for variant in ("bevanet", "bevanet_s"):
        for w, h in ((2048, 1024), (960, 720)):
            for p in ("fp32", "fp16", "bf16"):
                assert f"{variant} {w}x{h} {p}" in rows
            assert rows[f"{variant} {w}x{h} fp32"]["reference"] is True
        assert rows[f"{variant} 2048x1024 fp16 + torch.compile"]["compile"] is True
    off = [f for f in rows.values() if False in (f.get("cuda_graphs"), f.get("channels_last"),
                                                 f.get("fold_bn"))]  # fmt: skip
    assert len(off) == 3


def test_prepare_writes_a_jpeg_copy(shared_data, tmp_path):
    camvid = shared_data / "camvid"
    if not (camvid / "val.lst").is_file():
        pytest.skip(f"CamVid val missing under {camvid}")
    src = tmp_path / "src"
    (src / "val").mkdir(parents=True)
    (src / "valannot").mkdir()
    lines = (camvid / "val.lst").read_text().split("\n")[:2]
    for line in lines:
        image, label = line.split()
        (src / image).symlink_to(camvid / image)
        (src / label).symlink_to(camvid / label)
    (src / "val.lst").write_text("\n".join(lines) + "\n")
    gpu_check.prepare(src, tmp_path / "copy")
    listed = (tmp_path / "copy" / "val.lst").read_text().split()
    assert listed[0].endswith(".jpg") and listed[1].endswith(".png")
    assert (tmp_path / "copy" / listed[0]).read_bytes()[:2] == b"\xff\xd8"  # JPEG
