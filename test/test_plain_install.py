"""A plain `pip install -e .` (no extras, no ROS) in a venv of its own: every `bevanet-*`
command either works or says in one line what to install; never a traceback.

The venv is built once at .venv/plain-install (torch pinned like .venv) and rebuilt when
setup.py changes; the first build takes a few minutes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAIN = REPO / ".venv" / "plain-install"
SAMPLE = REPO / "bags" / "solid_white_right"


def _console_scripts() -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_package import CONSOLE_SCRIPTS

    return sorted(n for n in CONSOLE_SCRIPTS if n.startswith("bevanet-"))


@pytest.fixture(scope="module")
def plain_venv() -> Path:
    want = hashlib.sha256((REPO / "setup.py").read_bytes()).hexdigest()
    stamp = PLAIN / ".stamp"
    if stamp.is_file() and stamp.read_text() == want and (PLAIN / "bin" / "python").exists():
        return PLAIN
    shutil.rmtree(PLAIN, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(PLAIN)], check=True, timeout=300)
    pip = [str(PLAIN / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    cmd = pip + ["install", "-e", str(REPO)]
    constraints = REPO / ".venv" / "constraints.txt"  # the torch that bootstrap.sh pinned
    if constraints.is_file():
        cmd[-2:-2] = ["-c", str(constraints)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    stamp.write_text(want)
    return PLAIN


def run(venv: Path, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(venv / "bin" / args[0])] + args[1:],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def works_or_names_what_to_install(done: subprocess.CompletedProcess, what: str) -> None:
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text[-3000:]
    if done.returncode == 0:
        return
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{what}: expected one line, got:\n{done.stderr}"
    assert "install" in lines[0], lines[0]


def test_the_plain_venv_has_no_extras(plain_venv):
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('onnx', 'onnxruntime', 'openvino', 'foxglove', 'rclpy', 'launch') "
        "if u.find_spec(m)])"
    )
    done = subprocess.run(  # not from the repository root, where launch/ is a folder
        [str(plain_venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        cwd=plain_venv,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("name", _console_scripts())
def test_every_command_prints_its_help(plain_venv, name, tmp_path):
    done = run(plain_venv, [name, "--help"], tmp_path, timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stdout + done.stderr
    # each default said once, and no "(default: None)" for options whose absence has a meaning
    flat = " ".join(done.stdout.split())
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", flat), flat
    assert "(default: None)" not in flat, flat


def test_bag_tools_work_without_extras(plain_venv, tmp_path):
    demo = run(
        plain_venv,
        ["bevanet-demo", "--max-frames", "2", "--no-video", "--threads", "1", "--out", "demo"],
        tmp_path,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert (tmp_path / "demo" / "segmented_bag" / "metadata.yaml").is_file()
    evaluated = run(
        plain_venv,
        ["bevanet-bag-eval", str(SAMPLE), "--max-frames", "2", "--threads", "1", "--json", "report.json"],
        tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert (tmp_path / "report.json").is_file()


def test_commands_that_need_an_extra_say_which_in_one_line(plain_venv, tmp_path, shared_data):
    (tmp_path / "model.onnx").write_bytes(b"")  # the backend is chosen before the file is read
    cases = {
        "export": ["bevanet-export", "--onnx", "m.onnx", "--input-size", "480x360"],
        "eval onnx": [
            "bevanet-eval",
            "--dataset",
            "camvid",
            "--root",
            str(shared_data / "camvid"),
            "--max-frames",
            "1",
            "--weights",
            "model.onnx",
        ],
        "demo foxglove": ["bevanet-demo", "--foxglove", "0", "--max-frames", "1", "--no-video"],
    }
    for what, args in cases.items():
        done = run(plain_venv, args, tmp_path)
        assert done.returncode != 0, f"{what} ran without its extra:\n{done.stdout}"
        works_or_names_what_to_install(done, what)
