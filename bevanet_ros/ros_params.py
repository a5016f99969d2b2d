"""Declares the parameters of `bevanet_ros.params.PARAMS` on a node and validates every
change in one place.

Read-only parameters (the ones that need a model reload) are truly read-only on the plain node.
On the lifecycle node they may change only while it is unconfigured, and take effect at the next
configure. Dynamic parameters are validated together with all the others (the whole
`NodeSettings` is rebuilt) and applied atomically through `on_change`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from bevanet_ros.params import (
    PARAMS,
    SPECS,
    NodeSettings,
    ParameterError,
    ParamSpec,
    validate_value,
)

_ROS_TYPES = {
    "str": ParameterType.PARAMETER_STRING,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "bool": ParameterType.PARAMETER_BOOL,
    "str_list": ParameterType.PARAMETER_STRING_ARRAY,
}


def make_descriptor(spec: ParamSpec, read_only: bool) -> ParameterDescriptor:
    """ParamSpec -> rcl_interfaces/ParameterDescriptor (type, description, ranges, read-only)."""
    desc = ParameterDescriptor(
        name=spec.name,
        type=_ROS_TYPES[spec.type_name],
        description=spec.description,
        additional_constraints=spec.constraints,
        read_only=read_only,
    )
    if spec.int_range is not None:
        lo, hi, step = spec.int_range
        desc.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step)]
    if spec.float_range is not None:
        desc.floating_point_range = [
            FloatingPointRange(
                from_value=float(spec.float_range[0]),
                to_value=float(spec.float_range[1]),
                step=0.0,
            )
        ]
    return desc


class ParameterBinder:
    """Owns the node's parameters: declaration, validation callback and the current settings.

    `reload_allowed()` says whether read-only (reload) parameters may change right now (always
    False on the plain node, "while unconfigured" on the lifecycle node). `on_change(settings)` is
    called with the new, fully validated settings after a successful change.
    """

    def __init__(
        self,
        node: Node,
        managed: bool,
        reload_allowed: Callable[[], bool] = lambda: False,
        on_change: Callable[[NodeSettings], None] | None = None,
    ) -> None:
        self._node = node
        self._managed = managed
        self._reload_allowed = reload_allowed
        self._on_change = on_change
        self._declared = False
        self._pending: NodeSettings | None = None
        self.settings: NodeSettings | None = None
        node.add_on_set_parameters_callback(self._on_set)
        if hasattr(node, "add_post_set_parameters_callback"):  # Iron and newer
            node.add_post_set_parameters_callback(self._post_set)
            self._apply_in_post = True
        else:  # Humble: apply right after validation
            self._apply_in_post = False
        for spec in PARAMS:
            desc = make_descriptor(spec, read_only=spec.read_only and not managed)
            if spec.type_name == "str_list" and not spec.default:
                # an empty list would be declared as a byte array; declare the type, no value
                node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, desc)
            else:
                node.declare_parameter(spec.name, spec.default, desc)
        self._declared = True

    def current_values(self) -> dict[str, Any]:
        """Every parameter's current value (None where an array was declared without a value)."""
        values: dict[str, Any] = {}
        for spec in PARAMS:
            try:
                values[spec.name] = self._node.get_parameter(spec.name).value
            except ParameterUninitializedException:
                values[spec.name] = None
        return values

    def resolve(self) -> NodeSettings:
        """Validates all current values together; stores and returns the settings. Raises
        ParameterError (the node must not build anything then)."""
        self.settings = NodeSettings.from_values(self.current_values())
        return self.settings

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        try:
            updates: dict[str, Any] = {}
            for param in params:
                if param.name not in SPECS:
                    continue  # e.g. use_sim_time: not ours
                value = None if param.type_ == Parameter.Type.NOT_SET else param.value
                if value is not None:
                    validate_value(param.name, value)
                if self._declared and SPECS[param.name].read_only and self._managed and not self._reload_allowed():
                    raise ParameterError(
                        f"parameter {param.name!r} needs a model reload: it can change only "
                        "while the node is unconfigured (deactivate and cleanup first)"
                    )
                updates[param.name] = value
            if not self._declared or not updates:
                return SetParametersResult(successful=True)
            if any(SPECS[name].read_only for name in updates):
                # lifecycle node while unconfigured: values can pass through inconsistent states
                # (input_width before input_height); the rules between them run at configure
                return SetParametersResult(successful=True)
            base = self.current_values()
            base.update(updates)
            new = NodeSettings.from_values(base)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self._apply_in_post:
            self._pending = new
        else:
            self._apply(new)
        return SetParametersResult(successful=True)

    def _post_set(self, params: list[Parameter]) -> None:
        new, self._pending = self._pending, None
        if new is not None:
            self._apply(new)

    def _apply(self, new: NodeSettings) -> None:
        if self.settings is None:  # lifecycle node before configure: resolved at configure
            return
        self.settings = new
        if self._on_change is not None:
            self._on_change(new)
