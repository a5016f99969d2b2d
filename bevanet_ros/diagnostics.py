"""/diagnostics messages from the ROS-free reports of `bevanet_core.serving.diagnostics`: a
`DiagnosticStatus`, or a `diagnostic_updater.DiagnosticStatusWrapper` where that package imports."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from bevanet_core.serving.diagnostics import StatusReport

try:
    from diagnostic_updater import DiagnosticStatusWrapper
except ImportError:  # diagnostic_updater is not on PyPI: plain DiagnosticStatus messages then
    DiagnosticStatusWrapper = None

LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR}


def to_status(report: StatusReport, node_name: str, updater: bool = False) -> DiagnosticStatus:
    """The report as a status named '<node_name>: <what>'; `updater`: a DiagnosticStatusWrapper
    where diagnostic_updater imports."""
    level = LEVELS[report.level]
    if updater and DiagnosticStatusWrapper is not None:
        status = DiagnosticStatusWrapper()
        status.summary(level, report.message)
        for key, value in report.values.items():
            status.add(key, value)
    else:
        status = DiagnosticStatus(level=level, message=report.message)
        status.values = [KeyValue(key=k, value=v) for k, v in report.values.items()]
    status.name = f"{node_name}: {report.name}"
    status.hardware_id = report.hardware_id
    return status
