"""The node's parameter values checked: each on its own against its spec (`validate_value`, which
the node calls from its set-parameters callback) and all together as `NodeSettings`, built once
every parameter is declared, so a bad value is rejected with a message naming the parameter, the
value and what was expected, before anything is built. Plain Python, no ROS.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...imaging.policy import max_pixels
from ..health import HealthThresholds
from .spec import DEFAULT_WEIGHTS_VARIANT, HEALTH_PARAMETERS, PARAMS, RUNTIME_PARAMS, SPECS, ParamSpec

if TYPE_CHECKING:
    from bevanet_core.runtime.segmenter import SegmenterConfig

_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
# a relative or absolute ROS topic name, no substitutions ("image", "/cam/front/image_raw", "~/x")
_TOPIC_RE = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_TOKEN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ParameterError(ValueError):
    """A parameter value the node cannot use; the message names parameter, value and rule."""


def thresholds_from_settings(settings: Any) -> HealthThresholds:
    """The node settings' health_<field> values as HealthThresholds."""
    return HealthThresholds(**{name: getattr(settings, f"health_{name}") for name, _, _ in HEALTH_PARAMETERS})


def _type_ok(spec: ParamSpec, value: Any) -> bool:
    kind = spec.type_name
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "str_list":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return False


def validate_value(name: str, value: Any) -> None:
    """Checks one parameter on its own; raises ParameterError naming it, the value and the rule."""
    spec = SPECS.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter {name!r}; known: {', '.join(SPECS)}")
    if not _type_ok(spec, value):
        raise ParameterError(f"parameter {name!r} must be of type {spec.type_name}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(f"parameter {name!r} got {value!r}; expected {spec.constraints}")
    if spec.int_range is not None:
        lo, hi, step = spec.int_range
        if not lo <= value <= hi or (value - lo) % step:
            raise ParameterError(f"parameter {name!r} got {value}; expected {spec.constraints}")
    if spec.float_range is not None and not spec.float_range[0] <= value <= spec.float_range[1]:
        raise ParameterError(f"parameter {name!r} got {value}; expected {spec.constraints}")
    if name == "device" and not _DEVICE_RE.match(value):
        raise ParameterError(f"parameter 'device' got {value!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    if name == "input_topics":
        if not value:
            raise ParameterError("parameter 'input_topics' is empty; give at least one camera topic")
        for topic in value:
            if not _TOPIC_RE.match(topic):
                raise ParameterError(f"parameter 'input_topics' has an invalid topic name {topic!r}")
        if len(set(value)) != len(value):
            raise ParameterError(f"parameter 'input_topics' lists a topic twice: {list(value)}")
    if name == "foxglove_address":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ParameterError(
                f"parameter 'foxglove_address' got {value!r}; expected an IP address of this computer "
                "(127.0.0.1, 0.0.0.0, ::1, ...)"
            ) from None
    if name == "camera_names":
        for cam in value:
            if not _TOKEN_RE.match(cam):
                raise ParameterError(
                    f"parameter 'camera_names' has {cam!r}; names must be letters, digits and '_' "
                    "(not starting with a digit)"
                )
        if len(set(value)) != len(value):
            raise ParameterError(f"parameter 'camera_names' lists a name twice: {list(value)}")


def _field(spec: ParamSpec) -> tuple[str, type, Any]:
    kind = {"str": str, "int": int, "float": float, "bool": bool, "str_list": tuple}
    default = tuple(spec.default) if spec.type_name == "str_list" else spec.default
    return spec.name, kind[spec.type_name], dataclasses.field(default=default)


_SettingsFields = dataclasses.make_dataclass("_SettingsFields", [_field(p) for p in PARAMS], frozen=True)


class NodeSettings(_SettingsFields):
    """Every parameter resolved and cross-checked (one field per spec, same name and default);
    built in one place and swapped atomically."""

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Validates every value (missing ones take the defaults) and the rules between them."""
        merged: dict[str, Any] = {p.name: p.default for p in PARAMS}
        for name, value in values.items():
            if value is None:  # declared without a value (empty array parameters)
                continue
            validate_value(name, value)
            merged[name] = value
        for key in ("input_topics", "camera_names"):
            merged[key] = tuple(merged[key])
        for spec in PARAMS:
            if spec.type_name == "float":
                merged[spec.name] = float(merged[spec.name])
        settings = cls(**merged)
        settings.check()
        return settings

    def check(self) -> None:
        """Rules between parameters, and the environment the node reads (BEVANET_MAX_PIXELS: a
        malformed value refuses the start, not every frame); raises ParameterError."""
        try:
            max_pixels()
        except ValueError as exc:
            raise ParameterError(f"environment: {exc}") from None
        if (self.input_width == 0) != (self.input_height == 0):
            raise ParameterError(
                "parameters 'input_width' and 'input_height' must both be 0 (model default) or "
                f"both set, got {self.input_width}x{self.input_height}"
            )
        if self.camera_names and len(self.camera_names) != len(self.input_topics):
            raise ParameterError(
                f"parameter 'camera_names' has {len(self.camera_names)} names for "
                f"{len(self.input_topics)} input_topics; give one per topic or none"
            )
        if self.engine and self.backend == "torch":
            raise ParameterError(
                f"parameter 'engine' ({self.engine!r}) needs backend 'onnxruntime', 'openvino' "
                "or 'tensorrt', got backend 'torch' (use 'weights' for torch)"
            )
        if not self.model_path and self.variant not in ("", DEFAULT_WEIGHTS_VARIANT):
            raise ParameterError(
                f"parameter 'variant' is {self.variant!r} but no 'weights' or 'engine' is given, "
                f"and the shipped default model is {DEFAULT_WEIGHTS_VARIANT!r} (CamVid); "
                "pass weights:=<file>"
            )
        if self.backend == "tensorrt" and not self.device.startswith("cuda"):
            raise ParameterError(f"backend 'tensorrt' needs a cuda device, got device {self.device!r}")

    def segmenter_config(self) -> SegmenterConfig:
        """The runtime's config: every parameter that is a `SegmenterConfig` field, the model
        path and the input size."""
        from bevanet_core.runtime.segmenter import SegmenterConfig

        same = {name: getattr(self, name) for name in RUNTIME_PARAMS}
        same.update(variant=self.variant or None, input_size=self.input_size)
        return SegmenterConfig(**same, weights=self.model_path, num_threads=self.num_threads or None)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(width, height) for the runtime, or None for the model's own size."""
        return (self.input_width, self.input_height) if self.input_width else None

    @property
    def model_path(self) -> str | None:
        """What the runtime loads: the engine when given, else the weights, else None (default)."""
        return self.engine or self.weights or None

    @property
    def cameras(self) -> list[str]:
        """Camera names, one per input topic."""
        if self.camera_names:
            return list(self.camera_names)
        return [f"cam{i}" for i in range(len(self.input_topics))]

    def output_prefix(self, camera_index: int) -> str:
        """'~/' for a single camera, '~/<camera>/' with several."""
        if len(self.input_topics) == 1:
            return "~/"
        return f"~/{self.cameras[camera_index]}/"

    def input_topic(self, camera_index: int, resolve: Callable[[str], str]) -> str:
        """The topic camera `camera_index` subscribes: its input topic for 'raw'; for
        'compressed', image_transport's name: the topic resolved with `resolve` (so that a
        remapping of the base topic reaches it), plus '/compressed'."""
        topic = self.input_topics[camera_index]
        return resolve(topic) + "/compressed" if self.input_transport == "compressed" else topic

    def with_updates(self, updates: Mapping[str, Any]) -> NodeSettings:
        """A new, validated settings object with `updates` applied (the old one is untouched)."""
        values = dataclasses.asdict(self)
        values.update(updates)
        return NodeSettings.from_values(values)


def reload_needed(names: Sequence[str]) -> list[str]:
    """Which of `names` are read-only (need a model reload)."""
    return [n for n in names if n in SPECS and SPECS[n].read_only]
