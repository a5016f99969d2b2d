"""Ctrl-C and SIGTERM: the node process exits 0 within 5 s without a traceback and leaves no
process behind; a second Ctrl-C during the teardown changes nothing; the lifecycle node passes
through its shutdown transition. Plus the signal phases themselves (no ROS)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXIT_S = 5.0


SIGNAL_PHASES = """
import os, signal, time
from bevanet_core.serving.shutdown import ShutdownSignals

signals = ShutdownSignals()
try:
    try:  # while starting: abandon the start-up
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)
        raise SystemExit("SIGINT while starting did not raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass
    assert signals.requested and signals.phase == "stopping", signals.phase
finally:
    signals.restore()
signals = ShutdownSignals()
try:
    signals.running()
    os.kill(os.getpid(), signal.SIGTERM)  # while running: only the flag
    assert signals.wait(1.0) and signals.requested
    signals.stopping()
    os.kill(os.getpid(), signal.SIGINT)  # while stopping: ignored
    time.sleep(0.1)
    assert signals.received == ["SIGTERM", "SIGINT"], signals.received
finally:
    signals.restore()
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
print("ok")
"""


def test_signal_phases_raise_then_flag_then_ignore():
    # in a fresh interpreter: a signal sent to the test process itself would reach whatever handlers
    # earlier tests left there (rclpy installs a C-level SIGINT handler that outlives its contexts)
    done = subprocess.run([sys.executable, "-c", SIGNAL_PHASES], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


try:
    import rclpy
    from lifecycle_msgs.msg import State, Transition, TransitionEvent
    from lifecycle_msgs.srv import ChangeState

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_ros_support import Probe, make_context, seeded_weights, shutdown_context, spinning

    __all__ = ["seeded_weights"]
except ImportError as err:
    rclpy = None
    _missing = f"{err.name} is not installed (the ROS 2 Python wheels)"
needs_ros = pytest.mark.skipif(rclpy is None, reason=_missing if rclpy is None else "")


class NodeProcess:
    """`python -m <module>` with the seeded weights, as `ros2 run` starts it, output collected."""

    def __init__(self, module: str, weights: Path, name: str) -> None:
        cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", "-r", f"image:=/{name}/image"]
        cmd += ["-p", f"weights:={weights}", "-p", "backend:=torch", "-p", "num_threads:=1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.1)

    def signal_and_wait(self, *signums: int) -> tuple[int, float]:
        """Sends the signals 50 ms apart; (exit code, seconds from the first one to the exit)."""
        t0 = time.monotonic()
        for signum in signums:
            self.proc.send_signal(signum)
            time.sleep(0.05)
        try:
            code = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        return code, time.monotonic() - t0


@needs_ros
@pytest.mark.parametrize(
    "signums, when",
    [
        ((signal.SIGINT,), "camera 'cam0'"),
        ((signal.SIGTERM,), "camera 'cam0'"),
        ((signal.SIGINT, signal.SIGINT), "camera 'cam0'"),
        ((signal.SIGINT, signal.SIGINT), "loaded bevanet_s"),  # while the node is still being built
    ],
    ids=["sigint", "sigterm", "double-sigint", "double-sigint-at-start-up"],
)
def test_the_node_exits_0_quickly_and_cleanly(seeded_weights, signums, when):
    node = NodeProcess("bevanet_ros.segmentation_node", seeded_weights, "stop_me")
    node.wait_for(when)
    code, seconds = node.signal_and_wait(*signums)
    assert code == 0, node.text()
    assert seconds < EXIT_S, f"{seconds:.1f} s"
    assert "Traceback" not in node.text() and "KeyboardInterrupt" not in node.text(), node.text()
    assert not Path(f"/proc/{node.proc.pid}").exists()


@needs_ros
def test_the_lifecycle_node_passes_through_its_shutdown_transition(seeded_weights):
    ctx = make_context()
    node = NodeProcess("bevanet_ros.lifecycle_segmentation_node", seeded_weights, "lc_stop")
    probe = Probe(ctx, "lc_probe")
    try:
        events = probe.subscribe("/lc_stop/transition_event", TransitionEvent, depth=20)
        client = probe.node.create_client(ChangeState, "/lc_stop/change_state")
        with spinning(ctx, probe.node):
            assert client.wait_for_service(timeout_sec=180), node.text()
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                result = client.call(ChangeState.Request(transition=Transition(id=transition)), timeout_sec=180)
                assert result is not None and result.success, node.text()
            assert events.wait(lambda items: items and items[-1].goal_state.id == State.PRIMARY_STATE_ACTIVE, 10)
            code, seconds = node.signal_and_wait(signal.SIGINT, signal.SIGINT)
            events.wait(lambda items: items[-1].goal_state.id == State.PRIMARY_STATE_FINALIZED, 5)
        assert code == 0 and seconds < EXIT_S, (code, seconds, node.text())
        assert "Traceback" not in node.text(), node.text()
        goals = [e.goal_state.label for e in events.items]
        assert goals[-2:] == ["shuttingdown", "finalized"], goals
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
        probe.destroy()
        shutdown_context(ctx)
