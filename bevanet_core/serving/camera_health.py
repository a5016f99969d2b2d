"""Camera and model health of a node's cameras, without ROS: one `health.HealthMonitor` per camera,
fed from the inference worker, read by the diagnostics timer as one `StatusReport` per camera, and
a log line when a camera goes WARN for a new reason or recovers (at most one per camera and reason
every `error_log_period_s`)."""

from __future__ import annotations

import threading
from typing import Any

from .diagnostics import StatusReport, as_text
from .health import WARN, HealthMonitor
from .params import NodeSettings, thresholds_from_settings
from .stats import LogThrottle


def _stamp_s(header: Any) -> float:
    return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9


class CameraHealth:
    """Health monitors of every camera of one node (thread-safe: worker writes, timer reads)."""

    def __init__(self, settings: NodeSettings, class_names: list[str], logger: Any) -> None:
        self._lock = threading.Lock()
        self.cameras = list(settings.cameras)
        self.topics = list(settings.input_topics)
        self.class_names = list(class_names)
        self.logger = logger
        self.throttle = LogThrottle(settings.error_log_period_s)
        self.enabled = settings.health_checks
        self.monitors = [HealthMonitor(c, thresholds_from_settings(settings), class_names) for c in self.cameras]
        self._reasons: list[tuple[str, ...]] = [() for _ in self.cameras]

    def apply(self, settings: NodeSettings) -> None:
        """New thresholds (dynamic parameters); the monitors keep their history."""
        thresholds = thresholds_from_settings(settings)
        with self._lock:
            self.enabled = settings.health_checks
            self.throttle.period_s = settings.error_log_period_s
            for monitor in self.monitors:
                monitor.t = thresholds

    def update(self, camera: int, msg: Any, rgb: Any, result: Any) -> None:
        """One segmented frame of `camera`: its message (stamp, encoding), decoded image and result."""
        if not self.enabled:
            return
        encoding = getattr(msg, "encoding", None) or f"compressed {getattr(msg, 'format', '')}".strip()
        with self._lock:
            monitor = self.monitors[camera]
            monitor.update(rgb, _stamp_s(msg.header), encoding, result.confidence, result.mask)
            level, message, _ = monitor.status()
            reasons = tuple(monitor.reasons)
            before, self._reasons[camera] = self._reasons[camera], reasons
        name = self.cameras[camera]
        for reason in reasons:
            if reason not in before and self.throttle.allow(f"{name}/{reason}")[0]:
                self.logger.warning(f"camera {name!r}: {message}")
                break
        if before and not reasons and self.throttle.allow(f"{name}/recovered")[0]:
            self.logger.info(f"camera {name!r}: back to normal ({', '.join(before)} gone)")

    def reports(self) -> list[StatusReport]:
        """One report per camera: OK or WARN, the reasons, the figures; its hardware id is the topic."""
        out = []
        with self._lock:
            for i, monitor in enumerate(self.monitors):
                if self.enabled:
                    level, message, values = monitor.status()
                else:
                    level, message, values = "OK", "health checks off (health_checks:=false)", {}
                level = "WARN" if level == WARN else "OK"
                out.append(
                    StatusReport(level, message, as_text(values, ".4g"), f"camera {self.cameras[i]}", self.topics[i])
                )
        return out
