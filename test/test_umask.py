"""Every file the tools write gets the mode the umask gives, as `open()` would: a node running
as another user must be able to read exported models, sidecars, checkpoints, bags and reports."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UMASK = 0o027  # files 0640, folders 0750: neither mkstemp's 0600 nor a world-readable default


def run_with_umask(code: str, cwd: Path) -> None:
    wrapper = f"import os, sys; os.umask({UMASK}); sys.argv = ['tool']\n{code}"
    done = subprocess.run([sys.executable, "-c", wrapper], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_outputs_respect_the_umask(tmp_path, shared_data):
    run_with_umask(
        "from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model, save_weights\n"
        "model, info = load_model(str(DEFAULT_WEIGHTS))\n"
        "save_weights(model, 'ckpt/model.safetensors', info)\n"
        "from bevanet_core.cli import export, demo, make_bag\n"
        "assert export.main(['--onnx', 'onnx/model.onnx', '--input-size', '480x360']) == 0\n"
        "assert demo.main(['--max-frames', '2', '--threads', '1', '--out', 'demo']) == 0\n"
        f"assert make_bag.main(['--dataset', 'camvid', '--root', {str(shared_data / 'camvid')!r},"
        " '--list', 'val.lst', '--max-frames', '2', '--out', 'bag']) == 0\n",
        tmp_path,
    )
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    for expected in (
        "ckpt/model.safetensors",
        "onnx/model.onnx",
        "onnx/model.onnx.json",
        "demo/report.json",
        "demo/overlay.mp4",
        "demo/montage.png",
    ):
        assert expected in names, sorted(names)
    assert any(n.startswith("demo/segmented_bag/") and n.endswith(".mcap") for n in names)
    assert any(n.startswith("bag/") and n.endswith(".mcap") for n in names)
    wrong = {
        p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
        for p in files
        if stat.S_IMODE(p.stat().st_mode) != 0o666 & ~UMASK
    }
    assert not wrong, wrong
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()]
    wrong_dirs = {
        p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
        for p in folders
        if stat.S_IMODE(p.stat().st_mode) != 0o777 & ~UMASK
    }
    assert not wrong_dirs, wrong_dirs
