"""Ctrl-C and SIGTERM as a long-running process should take them (no ROS here).

    signals = ShutdownSignals()      # installs SIGINT and SIGTERM handlers; phase "starting"
    ... build things ...             # a signal now raises KeyboardInterrupt: start-up is abandoned
    signals.running()                # a signal now only sets `requested`; the loop polls it
    while not signals.requested: ...
    signals.stopping()               # further signals are counted and ignored: teardown finishes
    signals.ignore_until_exit()      # or signals.restore() where the process goes on

One signal ends the process cleanly; a second Ctrl-C while it tears down (launch sends SIGINT,
then SIGTERM after a while; an impatient user presses Ctrl-C twice) never interrupts the
teardown half-way with a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """SIGINT/SIGTERM handling in three phases: starting (raise), running (flag), stopping (ignore).

    Must be created in the main thread (Python delivers signals there only)."""

    def __init__(self) -> None:
        self.phase = "starting"
        self.received: list[str] = []
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)

    @property
    def requested(self) -> bool:
        """True once a signal asked the process to stop."""
        return self.event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Blocks until a signal arrives (True) or `timeout_s` passes (False)."""
        return self.event.wait(timeout_s)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signal.Signals(signum).name)
        if self.phase == "stopping":
            return
        self.event.set()
        if self.phase == "starting":
            self.phase = "stopping"
            raise KeyboardInterrupt

    def running(self) -> None:
        """From now on a signal only sets `requested` (unless one arrived already)."""
        if self.phase == "starting":
            self.phase = "running"

    def stopping(self) -> None:
        """From now on signals are ignored until `restore`."""
        self.phase = "stopping"

    def ignore_until_exit(self) -> None:
        """Ignores SIGINT and SIGTERM for the rest of the process. Python puts the default
        handlers back while it finalizes (which takes a while after torch was imported), so a
        signal then would kill the process with status -2 or -15 instead of letting it exit 0;
        ignored ones are left ignored."""
        self.phase = "stopping"
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        """Puts back the handlers that were there before."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}
