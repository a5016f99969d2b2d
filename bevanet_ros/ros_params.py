"""Declares the parameters of `bevanet_core.serving.params.PARAMS` on a node and validates every
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
from rclpy.node import Node
from rclpy.parameter import Parameter

from bevanet_core.serving.param_changes import evaluate_change
from bevanet_core.serving.params import PARAMS, NodeSettings, ParameterError, ParamSpec

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
        lo, hi = (float(v) for v in spec.float_range)
        desc.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return desc


def declare_empty_string_array(node: Node, name: str, descriptor: ParameterDescriptor) -> None:
    """Declares a string array whose default is the empty list, with that value set.

    rclpy types a bare `[]` as a byte array, and an array declared by type alone has no value:
    the get_parameters service then answers nothing for a whole request that names it, so
    `ros2 param dump` and `ros2 param get` show none of the node's parameters. The value is set
    before the descriptor (which may be read-only) is put in place."""
    param = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, ParameterDescriptor(read_only=False))
    if param.type_ == Parameter.Type.NOT_SET:  # no override from the command line or a file
        node.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, [])])
    node.set_descriptor(name, descriptor)


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
                declare_empty_string_array(node, spec.name, desc)
            else:
                node.declare_parameter(spec.name, spec.default, desc)
        self._declared = True

    def current_values(self) -> dict[str, Any]:
        """Every parameter's current value (each is declared with one)."""
        return {spec.name: self._node.get_parameter(spec.name).value for spec in PARAMS}

    def resolve(self) -> NodeSettings:
        """Validates all current values together; stores and returns the settings. Raises
        ParameterError (the node must not build anything then)."""
        self.settings = NodeSettings.from_values(self.current_values())
        return self.settings

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        updates = {p.name: None if p.type_ == Parameter.Type.NOT_SET else p.value for p in params}
        try:
            new = evaluate_change(
                updates,
                self.current_values,
                declared=self._declared,
                managed=self._managed,
                reload_allowed=self._reload_allowed(),
            )
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if new is not None and self._apply_in_post:
            self._pending = new
        elif new is not None:
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
