"""What a segmentation node reports on /diagnostics, without ROS: `StatusReport`s, its own status
from the stream's statistics (`NodeStatus`) and, from `camera_health.CameraHealth`, one per
camera. The node turns each `StatusReport` into a `DiagnosticStatus`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .params import NodeSettings


@dataclasses.dataclass
class StatusReport:
    """One status: level ('OK', 'WARN' or 'ERROR'), message, figures as text, what it is about
    (the status is named '<node>: <name>') and its hardware id."""

    level: str
    message: str
    values: dict[str, str]
    name: str
    hardware_id: str


def as_text(values: Mapping[str, Any], float_format: str) -> dict[str, str]:
    """Figures as the key-value text of a status: floats in `float_format`, the rest as str."""
    return {k: format(v, float_format) if isinstance(v, float) else str(v) for k, v in values.items()}


class NodeStatus:
    """The node's own status: ERROR when frames went bad, were lost in transport or failed
    inference since the last report, WARN before the first frame, else rate and latencies."""

    def __init__(self) -> None:
        self._last_reported_errors = 0

    def report(self, settings: NodeSettings | None, backend: str | None, snap: Mapping[str, Any], active: bool):
        """The status now; `backend` is the one that runs (also when 'auto' chose it), `snap`
        the stream's statistics (`StreamStats.snapshot()`, empty before the model is loaded)."""
        hardware_id = "unconfigured" if settings is None else f"{backend or settings.backend}:{settings.device}"
        errors = (
            int(snap.get("frames_bad", 0))
            + int(snap.get("inference_errors", 0))
            + int(snap.get("frames_lost_in_transport", 0))
        )
        new_errors = errors - self._last_reported_errors
        self._last_reported_errors = errors
        if not active:
            level, message = "OK", "inactive"
        elif new_errors > 0:
            level = "ERROR"
            message = f"{new_errors} bad frames or inference errors since the last report: {snap.get('last_error')}"
        elif snap.get("frames_received", 0) == 0:
            level, message = "WARN", "no camera frames received yet"
        else:
            level = "OK"
            message = (
                f"{snap['output_rate_hz']:.1f} Hz out, "
                f"inference {snap['inference_ms_mean']:.1f} ms, "
                f"end-to-end {snap['end_to_end_ms_mean']:.1f} ms"
            )
        return StatusReport(level, message, as_text(snap, ".3f"), "semantic segmentation", hardware_id)
