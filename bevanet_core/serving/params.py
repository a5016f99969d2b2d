"""The segmentation node's parameters, declared once: one table of specs, derived from the
runtime's own enumerations and the model registry, gives the ROS descriptors (built by the node),
the validation, the defaults of `config/segmentation.yaml` and the launch arguments' help.

Plain Python (no ROS): the node calls `validate_value` from its set-parameters callback and
`NodeSettings.from_values` once every parameter is declared, so a bad value is rejected with a
message naming the parameter, the value and what was expected, before anything is built.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bevanet_core.options import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_DEVICE,
    DEFAULT_PRECISION,
    DEFAULT_RESIZE,
    DEFAULT_UPSAMPLE,
    PRECISIONS,
    RESIZE_MODES,
    SEGMENTATION_MODEL_NAMES,
    UPSAMPLE_MODES,
)

from ..imaging.policy import max_pixels
from .health import HealthThresholds

if TYPE_CHECKING:
    from bevanet_core.runtime.segmenter import SegmenterConfig

VARIANTS = SEGMENTATION_MODEL_NAMES
TRANSPORTS = ("raw", "compressed")
INPUT_QOS = ("sensor_data", "best_effort", "reliable", "system_default")
OUTPUT_QOS = ("reliable", "best_effort")
MAX_INPUT_SIDE = 4096
DEFAULT_WEIGHTS_VARIANT = "bevanet_s"  # the shipped CamVid model used when 'weights' is empty
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
# a relative or absolute ROS topic name, no substitutions ("image", "/cam/front/image_raw", "~/x")
_TOPIC_RE = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_TOKEN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUNTIME = {
    "backend": DEFAULT_BACKEND,
    "device": DEFAULT_DEVICE,
    "precision": DEFAULT_PRECISION,
    "resize": DEFAULT_RESIZE,
    "upsample": DEFAULT_UPSAMPLE,
}
# parameters that are SegmenterConfig fields of the same meaning
RUNTIME_PARAMS = ("backend", "device", "precision", "resize", "upsample")


class ParameterError(ValueError):
    """A parameter value the node cannot use; the message names parameter, value and rule."""


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter: type (by its default's Python type, or `kind` for arrays), description,
    and the constraints that become the ROS descriptor."""

    name: str
    default: Any
    description: str
    read_only: bool = True
    choices: tuple[str, ...] | None = None
    int_range: tuple[int, int, int] | None = None  # (from, to, step)
    float_range: tuple[float, float] | None = None
    kind: str = ""  # "str", "int", "float", "bool", "str_list"

    @property
    def type_name(self) -> str:
        if self.kind:
            return self.kind
        return {str: "str", bool: "bool", int: "int", float: "float"}[type(self.default)]

    @property
    def constraints(self) -> str:
        """Human-readable constraint text for the descriptor's `additional_constraints`."""
        if self.choices:
            return "one of: " + ", ".join(repr(c) for c in self.choices)
        if self.int_range:
            lo, hi, step = self.int_range
            return f"integer in [{lo}, {hi}]" + (f", multiple of {step}" if step > 1 else "")
        if self.float_range:
            return f"number in [{self.float_range[0]}, {self.float_range[1]}]"
        return ""


_RELOAD = " Read-only: changing it needs a model reload (restart, or lifecycle cleanup + configure)."
# the health monitor's thresholds as node parameters: health_<field>, defaults HealthThresholds'
HEALTH_PARAMETERS: tuple[tuple[str, str, tuple], ...] = (
    ("black_p99", "Camera WARN 'black' when the 99th percentile of the luma (0-255) is below this.", (0.0, 255.0)),
    (
        "saturated_share",
        "Camera WARN 'saturated' when more than this share of the pixels is at 250 or more.",
        (0.0, 1.0),
    ),
    ("frozen_frames", "Camera WARN 'frozen' after this many near-identical frames in a row.", (1, 100000, 1)),
    ("frozen_s", "Camera WARN 'frozen' when near-identical frames span this many seconds of stamps.", (0.01, 3600.0)),
    (
        "frozen_diff",
        "Near-identical: a mean absolute difference from the frame before of at most this (grey levels).",
        (0.0, 255.0),
    ),
    ("noise_sigma", "Camera WARN 'noise' when the estimated noise sigma (grey levels) is above this.", (0.0, 255.0)),
    ("blur_sharpness", "Camera WARN 'blur' when the mean absolute Laplacian is below this.", (0.0, 255.0)),
    (
        "min_mean_confidence",
        "Model WARN 'low confidence' when the mean calibrated confidence is below this.",
        (0.0, 1.0),
    ),
    (
        "max_low_confidence_share",
        "Model WARN 'low confidence' when more than this share of the pixels is below 0.5 confidence.",
        (0.0, 1.0),
    ),
    (
        "max_class_distance",
        "Model WARN 'unusual scene' when the class distribution is further than this (total variation) from "
        "normal footage's.",
        (0.0, 1.0),
    ),
    ("min_road_share", "Model WARN 'no road' when less than this share of the pixels is road (0 = off).", (0.0, 1.0)),
)


def thresholds_from_settings(settings: Any) -> HealthThresholds:
    """The node settings' health_<field> values as HealthThresholds."""
    return HealthThresholds(**{name: getattr(settings, f"health_{name}") for name, _, _ in HEALTH_PARAMETERS})


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "variant",
        "",
        "Network variant; '' takes it from the weights' metadata." + _RELOAD,
        choices=("",) + VARIANTS,
    ),
    ParamSpec(
        "weights",
        "",
        "Weights file (.safetensors, or the authors' .pt/.pth); '' = the shipped CamVid BEVANet-S model." + _RELOAD,
    ),
    ParamSpec(
        "engine",
        "",
        "Exported model for backend onnxruntime or openvino (.onnx), openvino (.xml IR) or tensorrt "
        "(.engine/.plan), run at its own precision; "
        "used instead of 'weights' when set." + _RELOAD,
    ),
    ParamSpec(
        "backend",
        _RUNTIME["backend"],
        "Inference backend; auto measures the installed ones at start-up and keeps the fastest "
        "(the choice is logged and cached)." + _RELOAD,
        choices=BACKENDS,
    ),
    ParamSpec("device", _RUNTIME["device"], "Device: 'cpu', 'cuda' or 'cuda:N'." + _RELOAD),
    ParamSpec(
        "precision",
        _RUNTIME["precision"],
        "Numeric precision of the network; auto = an exported file's own (a different explicit "
        "one is refused), and for a checkpoint what backend auto chooses (else fp32)." + _RELOAD,
        choices=PRECISIONS,
    ),
    ParamSpec(
        "input_width",
        0,
        "Network input width in pixels (multiple of 8); 0 = the model's own "
        "input size (set both or neither)." + _RELOAD,
        int_range=(0, MAX_INPUT_SIDE, 8),
    ),
    ParamSpec(
        "input_height",
        0,
        "Network input height in pixels (multiple of 8); 0 = the model's own "
        "input size (set both or neither)." + _RELOAD,
        int_range=(0, MAX_INPUT_SIDE, 8),
    ),
    ParamSpec(
        "resize",
        _RUNTIME["resize"],
        "How frames fit the network input: 'stretch' or 'letterbox' (keeps "
        "the aspect ratio). Masks always come back at the input resolution." + _RELOAD,
        choices=RESIZE_MODES,
    ),
    ParamSpec(
        "upsample",
        _RUNTIME["upsample"],
        "'logits': bilinear logits at the frame resolution, then argmax "
        "(smooth edges); 'labels': argmax at 1/8, then nearest (cheaper, blockier)." + _RELOAD,
        choices=UPSAMPLE_MODES,
    ),
    ParamSpec(
        "input_topics",
        ["image"],
        "Camera topics, one subscription each (relative names "
        "follow remapping: -r image:=/camera/image_raw)." + _RELOAD,
        kind="str_list",
    ),
    ParamSpec(
        "camera_names",
        [],
        "Names for the cameras' output namespaces (~/<name>/mask) when "
        "there are several; default cam0, cam1, ..." + _RELOAD,
        kind="str_list",
    ),
    ParamSpec(
        "input_transport",
        "raw",
        "'raw' subscribes sensor_msgs/Image on each topic; "
        "'compressed' subscribes sensor_msgs/CompressedImage on <topic>/compressed." + _RELOAD,
        choices=TRANSPORTS,
    ),
    ParamSpec(
        "input_qos",
        "sensor_data",
        "Camera subscription QoS: 'sensor_data' (best effort, "
        "accepts best-effort and reliable publishers), 'best_effort', 'reliable' or "
        "'system_default'." + _RELOAD,
        choices=INPUT_QOS,
    ),
    ParamSpec(
        "input_qos_depth",
        1,
        "Camera subscription history depth (the node keeps only the latest frame per camera anyway)." + _RELOAD,
        int_range=(1, 100, 1),
    ),
    ParamSpec(
        "output_qos",
        "reliable",
        "Output QoS reliability ('reliable' is what RViz uses by default)." + _RELOAD,
        choices=OUTPUT_QOS,
    ),
    ParamSpec("output_qos_depth", 1, "Output history depth." + _RELOAD, int_range=(1, 100, 1)),
    ParamSpec(
        "overlay_alpha",
        0.5,
        "Weight of the colour mask in ~/overlay (0 = camera only, 1 = colour mask only).",
        read_only=False,
        float_range=(0.0, 1.0),
    ),
    ParamSpec("publish_mask", True, "Publish ~/mask (mono8 class ids, 255 = unlabeled).", read_only=False),
    ParamSpec(
        "publish_color_mask",
        True,
        "Publish ~/color_mask (rgb8), computed only while someone subscribes.",
        read_only=False,
    ),
    ParamSpec(
        "publish_overlay",
        True,
        "Publish ~/overlay (rgb8), computed only while someone subscribes.",
        read_only=False,
    ),
    ParamSpec(
        "publish_confidence",
        False,
        "Publish ~/confidence (mono8, max softmax probability * 255, with the weights' fitted temperature).",
        read_only=False,
    ),
    ParamSpec(
        "batch_window_ms",
        5.0,
        "How long the worker waits for the other cameras' frames to batch them into one inference.",
        read_only=False,
        float_range=(0.0, 1000.0),
    ),
    ParamSpec(
        "diagnostics_period_s",
        1.0,
        "Period of the /diagnostics status." + _RELOAD,
        float_range=(0.1, 60.0),
    ),
    ParamSpec(
        "error_log_period_s",
        5.0,
        "At most one error log per problem kind per this many seconds (bad frames are always counted).",
        read_only=False,
        float_range=(0.0, 3600.0),
    ),
    ParamSpec(
        "num_threads",
        0,
        "CPU threads for inference (PyTorch's setting is process-wide; ONNX Runtime and "
        "OpenVINO get their own); 0 = the default of the node and every tool: half the cores "
        "this process may use, 1 to 4 (a pool as large as a shared CPU slows inference "
        "down many times)." + _RELOAD,
        int_range=(0, 256, 1),
    ),
    ParamSpec("warmup", True, "Run one inference at load so the first frame is not slow." + _RELOAD),
    ParamSpec(
        "foxglove_port",
        0,
        "Also serve the first camera's image, colour mask, overlay and latency to Foxglove or "
        "Lichtblick over the Foxglove WebSocket protocol on this port of foxglove_address "
        "(needs foxglove-sdk); 0 = off." + _RELOAD,
        int_range=(0, 65535, 1),
    ),
    ParamSpec(
        "foxglove_address",
        "127.0.0.1",
        "Address the Foxglove view listens on: 127.0.0.1 = this computer only; '0.0.0.0' (or "
        "'::') serves the camera stream to every network the computer is on." + _RELOAD,
    ),
    ParamSpec(
        "health_checks",
        True,
        "Watch every camera and the model (black, saturated, frozen, noisy or blurred frames, format "
        "or time jumps, low confidence, unusual scenes) and report them on /diagnostics.",
        read_only=False,
    ),
    *(
        ParamSpec(
            f"health_{name}",
            getattr(HealthThresholds, name),
            text,
            read_only=False,
            **({"int_range": bounds} if len(bounds) == 3 else {"float_range": bounds}),
        )
        for name, text, bounds in HEALTH_PARAMETERS
    ),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


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

    def with_updates(self, updates: Mapping[str, Any]) -> NodeSettings:
        """A new, validated settings object with `updates` applied (the old one is untouched)."""
        values = dataclasses.asdict(self)
        values.update(updates)
        return NodeSettings.from_values(values)


def reload_needed(names: Sequence[str]) -> list[str]:
    """Which of `names` are read-only (need a model reload)."""
    return [n for n in names if n in SPECS and SPECS[n].read_only]


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def params_yaml() -> str:
    """The text of `config/segmentation.yaml`: every parameter at its default, read-only ones
    first (`python -m bevanet_core.serving.params > config/segmentation.yaml` rewrites it)."""
    lines = [
        "# Parameters of the segmentation node, one file for every variant: the launch file sets",
        "# `variant` (and the device and precision of variants without shipped weights) on top",
        "# of it, then its non-empty arguments. `ros2 param describe` explains every key.",
        "# Written by `python -m bevanet_core.serving.params`; a test keeps it equal to the spec.",
        "/**:",
        "  ros__parameters:",
    ]
    for read_only in (True, False):
        lines.append(
            "    # --- read-only: changing these needs a restart, or lifecycle cleanup + configure"
            if read_only
            else "    # --- dynamic: `ros2 param set` applies these at once"
        )
        for spec in PARAMS:
            if spec.read_only != read_only:
                continue
            note = f"  # {spec.constraints}" if spec.constraints else ""
            if spec.type_name == "str_list" and not spec.default:
                # an empty YAML list has no type for ROS: leave it declared without a value
                lines.append(f"    # {spec.name}: [a, b]  (default: none)")
            else:
                lines.append(f"    {spec.name}: {_yaml_value(spec.default)}{note}")
    return "\n".join(lines) + "\n"


def _help_default(spec: ParamSpec) -> str:
    return _yaml_value(spec.default)


def node_help(prog: str, node_name: str = "segmentation", lifecycle: bool = False) -> str:
    """`--help` text of the node executables: usage, then every parameter with its type,
    default and description (what `ros2 param describe` would show on a running node)."""
    start = (
        f"Starts unconfigured; drive it with `ros2 lifecycle set /{node_name} configure` and `activate`."
        if lifecycle
        else "Loads the model at start and serves until Ctrl-C."
    )
    lines = [
        f"usage: {prog} [-h] [--ros-args -r image:=TOPIC -p NAME:=VALUE ... --params-file FILE]",
        "",
        "BEVANet semantic segmentation node: sensor_msgs/Image in on `image` (one topic per",
        "entry of input_topics), label masks out on ~/mask (mono8 class ids, 255 = unlabeled),",
        "~/color_mask and ~/overlay (rgb8), ~/confidence, latched ~/label_info",
        "(vision_msgs/LabelInfo) and ~/label_info_json (std_msgs/String), /diagnostics.",
        start,
        "",
        "examples:",
        f"  {prog} --ros-args -r image:=/camera/image_raw",
        f"  {prog} --ros-args -p weights:=model.safetensors -p backend:=onnxruntime",
        f"  {prog} --ros-args --params-file config/segmentation.yaml",
        "",
        "parameters (NAME  TYPE  default: VALUE; read-only ones need a restart to change):",
    ]
    for spec in PARAMS:
        head = f"  {spec.name}  {spec.type_name}  default: {_help_default(spec)}"
        lines.append(head + ("" if spec.read_only else "  (dynamic)"))
        text = spec.description.replace(_RELOAD, "")
        if spec.constraints:
            text += f" ({spec.constraints})"
        lines.extend("      " + part for part in _wrap(text, 88))
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def params_markdown() -> str:
    """The parameter table of the README (`python -m bevanet_core.serving.params --markdown`)."""
    rows = ["| parameter | type | default | what |", "| --- | --- | --- | --- |"]
    for spec in PARAMS:
        text = spec.description.replace(_RELOAD, "")
        if spec.constraints and not spec.choices:
            text += f" ({spec.constraints})"
        elif spec.choices and len(spec.choices) <= 6:
            text += " (" + spec.constraints + ")"
        text += "" if spec.read_only else " Dynamic."
        default = _help_default(spec).replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {spec.type_name} | `{default}` | {text} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(params_markdown() if "--markdown" in sys.argv[1:] else params_yaml(), end="")
