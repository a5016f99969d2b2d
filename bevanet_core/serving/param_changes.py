"""A set-parameters request checked against the node's rules, before anything applies it (no ROS).

The node's on-set callback hands the request here as {name: value} (None for "unset");
`evaluate_change` says what to apply, or raises ParameterError with the reason the request is
refused, which the node returns to `ros2 param set`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .params import SPECS, NodeSettings, ParameterError, validate_value


def evaluate_change(
    updates: Mapping[str, Any],
    current: Callable[[], dict[str, Any]],
    *,
    declared: bool,
    managed: bool,
    reload_allowed: bool,
) -> NodeSettings | None:
    """The settings to apply after `updates`, or None when there is nothing to apply now.

    Names that are not the node's (use_sim_time, ...) pass through. While the node declares
    its parameters (`declared` False) each value is only checked on its own. A read-only
    parameter may change only on a managed node that allows a reload (unconfigured): it is
    checked alone then, because values pass through inconsistent states (input_width before
    input_height) and the rules between them run at the next configure."""
    ours = {name: value for name, value in updates.items() if name in SPECS}
    for name, value in ours.items():
        if value is not None:
            validate_value(name, value)
        if declared and SPECS[name].read_only and managed and not reload_allowed:
            raise ParameterError(
                f"parameter {name!r} needs a model reload: it can change only while the node is "
                "unconfigured (deactivate and cleanup first)"
            )
    if not declared or not ours or any(SPECS[name].read_only for name in ours):
        return None
    values = current()
    values.update(ours)
    return NodeSettings.from_values(values)
