"""The prepared GPU training command, run on the CPU with a tiny budget: packing CamVid for the
device tool, training for a time budget, fp16 weights split and joined, the report."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pack_writes_jpeg_images_png_labels_and_lists(camvid_subset, tmp_path):
    import cv2

    src = camvid_subset(tmp_path / "src", train=4, val=2)
    out = tmp_path / "packed"
    subprocess.run(
        [sys.executable, "scripts/pack_camvid.py", "--data", str(src), "--out", str(out), "--no-size-check"],
        cwd=REPO,
        check=True,
    )
    lines = (out / "train.lst").read_text().split()
    assert lines[0].endswith(".jpg") and lines[1].endswith(".png") and len(lines) == 8
    assert (out / lines[0]).read_bytes()[:2] == b"\xff\xd8"  # JPEG
    original = cv2.imread(str(src / (src / "train.lst").read_text().split()[1]), cv2.IMREAD_UNCHANGED)
    packed = cv2.imread(str(out / lines[1]), cv2.IMREAD_UNCHANGED)
    assert (packed == original).all()  # labels are lossless


def test_gpu_train_runs_on_the_cpu_with_a_tiny_budget(camvid_subset, tmp_path):
    from bevanet_core.checkpoint import load_model

    src = camvid_subset(tmp_path / "src", train=4, val=2)
    packed = tmp_path / "packed"
    subprocess.run(
        [sys.executable, "scripts/pack_camvid.py", "--data", str(src), "--out", str(packed), "--no-size-check"],
        cwd=REPO,
        check=True,
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/gpu_train.py",
            "--minutes",
            "0.1",
            "--data",
            str(packed),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch",
            "2",
            "--crop",
            "128x96",
            "--workers",
            "0",
            "--val-every",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["iterations"] >= 1 and result["val_images"] == 2
    assert all(v is None or 0.0 <= v <= 100.0 for v in result["per_class_iou"].values())
    assert set(result["per_class_iou"]) == {
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    }
    assert result["minutes_total"] < 5
    assert all((out / name).stat().st_size <= 16 * 2**20 for name in result["weights"]["parts"])
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back
    weights = subprocess.run(
        [sys.executable, "scripts/gpu_train.py", "--join", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert weights.returncode == 0, weights.stderr
    model, info = load_model(out / "bevanet_s_camvid.safetensors")
    assert info.variant == "bevanet_s" and info.extra["trained_by"] == "scripts/gpu_train.py"
    assert next(iter(model.state_dict().values())).dtype.is_floating_point
    # a damaged part is refused
    part = out / result["weights"]["parts"][-1]
    part.write_bytes(part.read_bytes()[:-1])
    bad = subprocess.run(
        [sys.executable, "scripts/gpu_train.py", "--join", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "sha256 mismatch" in bad.stderr


def test_time_budget_ends_the_run_validated(camvid_subset, tmp_path):
    from bevanet_core.training.config import load_config
    from bevanet_core.training.engine import train

    src = camvid_subset(tmp_path / "src", train=4, val=2)
    cfg = load_config(
        None,
        [
            f"data.root={src}",
            "data.train_list=train.lst",
            "data.val_list=val.lst",
            "data.base_size=128",
            "data.crop_size=[128,96]",
            "data.workers=0",
            "optim.batch_size=2",
            "optim.iterations=100000",
            f"run.out_dir={tmp_path / 'run'}",
            "run.val_every=0",
            "run.checkpoint_every=0",
            "run.threads=1",
            "run.log_every=1",
            "run.time_budget_min=0.2",
            "run.precision=fp32",
        ],
    )
    result = train(cfg)
    assert 1 <= result["iteration"] < 100000 and "final_miou" in result
    lrs = [
        json.loads(line)["train/lr"]
        for line in (tmp_path / "run" / "train.log.jsonl").read_text().splitlines()
        if "train/lr" in line
    ]
    # the schedule ran on the clock: far further than the iteration count alone would take it
    assert lrs[-1] < 0.9 * lrs[0]
