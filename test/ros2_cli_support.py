"""What the journey tests share: a `colcon build` of this package, the environment that
`source install/setup.bash` gives, the real `ros2` executable, and processes started the way a
user starts them (own process group, so a Ctrl-C reaches every process as from a terminal).

`ros2` is the one beside this Python (the venv's bin, where ../shared/ros-src's build.sh puts
it), else the one on PATH; `ros2_executable()` is None where neither exists, and the tests skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_S = 180.0  # a node imports torch and loads a model on a shared, busy CPU


def ros2_executable() -> str | None:
    """The `ros2` command line beside this interpreter, else on PATH, else None."""
    beside = Path(sys.executable).parent / "ros2"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ros2")


def ros2_missing_reason() -> str | None:
    """Why the real `ros2` journeys cannot run here, or None when they can."""
    if ros2_executable() is None:
        return (
            "no `ros2` executable: source a ROS 2 installation, or run scripts/bootstrap.sh with "
            "../shared/ros-src beside the repository"
        )
    try:
        import colcon_core  # noqa: F401
        import composition_interfaces.srv  # noqa: F401
        import launch_ros  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not importable: source .venv/ros-src/env.bash (scripts/test.sh does)"
    return None


def colcon_build(ws: Path) -> Path:
    """`colcon build` of this package in the workspace `ws`; returns its install prefix."""
    (ws / "src").mkdir(parents=True, exist_ok=True)
    link = ws / "src" / "bevanet_ros"
    if not link.exists():
        link.symlink_to(REPO)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from colcon_core.command import main; sys.exit(main())",
        "build",
        "--base-paths",
        "src",
        "--packages-select",
        "bevanet_ros",
        "--event-handlers",
        "console_cohesion+",
        "status-",
    ]
    done = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    installed = ws / "install" / "bevanet_ros"
    assert (installed / "lib" / "bevanet_ros" / "segmentation_node").is_file()
    return installed


def install_env(prefix: Path, domain_id: int) -> dict[str, str]:
    """The environment `source install/setup.bash` gives: the prefix first on the ament index,
    the Python path and PATH; the test's ROS domain; no ros2 daemon left behind by the CLI."""
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(
        [str(prefix)] + [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    )
    site = prefix / "lib" / f"python{sysconfig.get_python_version()}" / "site-packages"
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PATH"] = os.pathsep.join([str(prefix / "bin"), str(Path(ros2_executable()).parent), env.get("PATH", "")])
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A command in its own process group with its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "w")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=log.parent,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = START_S) -> re.Match:
        """Waits until the output matches `pattern`; fails with the output if the process ends."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {pattern!r}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s:\n{self.text()[-3000:]}"
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def ctrl_c(self, timeout: float = 60.0) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


# what ros2cli says when graph discovery has not (yet) seen a node that is there
NOT_DISCOVERED = re.compile(r"Unable to find container node|Node not found|node .* not found", re.I)


def ros2(env: dict[str, str], *args: str, timeout: float = 120.0, attempts: int = 3) -> subprocess.CompletedProcess:
    """One `ros2 ...` command, as typed; its output as text. On a busy machine discovery can
    miss a running node within --spin-time: the command is tried again (nothing happened then)."""
    for _ in range(attempts):
        done = subprocess.run(
            [ros2_executable(), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode == 0 or not NOT_DISCOVERED.search(done.stdout + done.stderr):
            return done
    return done


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False
