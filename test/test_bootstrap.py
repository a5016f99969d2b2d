"""scripts/bootstrap.sh, run for real in a throw-away copy: one line per step with how long it
usually takes and how long it took, the tools' output kept in .venv/bootstrap.log, and a failing
step that shows the log's last lines and names the file. The registry is switched off (no
index, no pip configuration), so pip's step for torch fails within seconds, as it would offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bootstrap_prints_one_line_per_step_and_keeps_the_tools_output_in_its_log(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "bootstrap.sh", repo / "scripts" / "bootstrap.sh")
    shutil.copy(REPO / "setup.py", repo / "setup.py")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "BEVANET_PYTHON": getattr(sys, "_base_executable", sys.executable),
        "BEVANET_ROS_SRC": str(tmp_path / "no-ros-src"),
    }
    done = subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    log = repo / ".venv" / "bootstrap.log"
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith("[bootstrap] ") for line in lines), done.stdout
    assert f"goes to {log}" in lines[0]
    steps = lines[1:]
    assert re.fullmatch(r"\[bootstrap\] creating the venv \(usually [^)]+\) \.\.\. \d+ s", steps[0]), steps
    assert steps[-1].startswith("[bootstrap] installing torch==2.13.0 (usually ") and re.search(
        r"\.\.\. FAILED after \d+ s$", steps[-1]
    ), steps
    # the failure names the log and shows its end: pip's own reason
    assert f"installing torch==2.13.0 failed; its whole output is in {log}" in done.stderr
    assert "No matching distribution found for torch==2.13.0" in done.stderr
    text = log.read_text()
    assert re.search(r"^===== \S+ creating the venv$", text, re.M) and "===== " in text.split("installing torch")[0]
    assert "No matching distribution found for torch==2.13.0" in text
    # pip's chatter is in the log, not on the terminal
    assert "Requirement already satisfied" in text or "Successfully installed" in text
    assert "Requirement already satisfied" not in done.stdout and "Successfully" not in done.stdout
