"""A component load request checked and turned into node arguments (no ROS).

The package's component container serves composition_interfaces' LoadNode with these: the
plugin name is checked, the request's remap rules and log level become the node's `--ros-args`.
"""

from __future__ import annotations

from collections.abc import Sequence

PACKAGE = "bevanet_ros"
# rcutils severities as LoadNode carries them
LOG_LEVELS = {10: "debug", 20: "info", 30: "warn", 40: "error", 50: "fatal"}
# extra arguments a C++ container understands; the Python one accepts and ignores this one
INTRA_PROCESS = "use_intra_process_comms"


class ComponentLoadError(ValueError):
    """A load request the container cannot serve; the message says why in one line."""


def check_plugin(package: str, plugin: str, known: Sequence[str]) -> None:
    """Raises ComponentLoadError naming what can be loaded unless `plugin` of `package` is `known`."""
    if package != PACKAGE or plugin not in known:
        raise ComponentLoadError(
            f"no component {plugin!r} in package {package!r}: this Python container loads "
            f"{', '.join(known)} from package {PACKAGE!r} (C++ components need rclcpp_components' container)"
        )


def node_arguments(remap_rules: Sequence[str], log_level: int) -> list[str]:
    """The request's remap rules and log level as node command-line arguments."""
    args = ["--ros-args"]
    for rule in remap_rules:
        if ":=" not in rule:
            raise ComponentLoadError(f"remap rule {rule!r} is not FROM:=TO")
        args += ["-r", rule]
    if log_level:
        if log_level not in LOG_LEVELS:
            raise ComponentLoadError(f"log level {log_level} is not one of {sorted(LOG_LEVELS)}")
        args += ["--log-level", LOG_LEVELS[log_level]]
    return args


def check_extra_arguments(names_values: Sequence[tuple[str, object]]) -> list[str]:
    """Warnings for the extra arguments of a request; ComponentLoadError for unknown ones."""
    warnings = []
    for name, value in names_values:
        if name != INTRA_PROCESS:
            raise ComponentLoadError(f"unknown extra argument {name!r} (known: {INTRA_PROCESS})")
        if value:
            warnings.append(f"{INTRA_PROCESS} is ignored (Python nodes have no intra-process transport)")
    return warnings
