"""The segmentation node's parameters, declared once: one table of specs, derived from the
runtime's own enumerations and the model registry. From it come the ROS descriptors (built by the
node), the validation and the settings (`settings.py`), and the defaults of
`config/segmentation.yaml`, the README's table and the node's `--help` (`render.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

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

from ..health import HealthThresholds

VARIANTS = SEGMENTATION_MODEL_NAMES
TRANSPORTS = ("raw", "compressed")
INPUT_QOS = ("sensor_data", "best_effort", "reliable", "system_default")
OUTPUT_QOS = ("reliable", "best_effort")
MAX_INPUT_SIDE = 4096
DEFAULT_WEIGHTS_VARIANT = "bevanet_s"  # the shipped CamVid model used when 'weights' is empty
_RUNTIME = {
    "backend": DEFAULT_BACKEND,
    "device": DEFAULT_DEVICE,
    "precision": DEFAULT_PRECISION,
    "resize": DEFAULT_RESIZE,
    "upsample": DEFAULT_UPSAMPLE,
}
# parameters that are SegmenterConfig fields of the same meaning
RUNTIME_PARAMS = ("backend", "device", "precision", "resize", "upsample")


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


RELOAD_NOTE = " Read-only: changing it needs a model reload (restart, or lifecycle cleanup + configure)."
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


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "variant",
        "",
        "Network variant; '' takes it from the weights' metadata." + RELOAD_NOTE,
        choices=("",) + VARIANTS,
    ),
    ParamSpec(
        "weights",
        "",
        "Weights file (.safetensors, or the authors' .pt/.pth); '' = the shipped CamVid BEVANet-S model." + RELOAD_NOTE,
    ),
    ParamSpec(
        "engine",
        "",
        "Exported model for backend onnxruntime or openvino (.onnx), openvino (.xml IR) or tensorrt "
        "(.engine/.plan), run at its own precision; "
        "used instead of 'weights' when set." + RELOAD_NOTE,
    ),
    ParamSpec(
        "backend",
        _RUNTIME["backend"],
        "Inference backend; auto measures the installed ones at start-up and keeps the fastest "
        "(the choice is logged and cached)." + RELOAD_NOTE,
        choices=BACKENDS,
    ),
    ParamSpec("device", _RUNTIME["device"], "Device: 'cpu', 'cuda' or 'cuda:N'." + RELOAD_NOTE),
    ParamSpec(
        "precision",
        _RUNTIME["precision"],
        "Numeric precision of the network; auto = an exported file's own (a different explicit "
        "one is refused), and for a checkpoint what backend auto chooses (else fp32)." + RELOAD_NOTE,
        choices=PRECISIONS,
    ),
    ParamSpec(
        "input_width",
        0,
        "Network input width in pixels (multiple of 8); 0 = the model's own "
        "input size (set both or neither)." + RELOAD_NOTE,
        int_range=(0, MAX_INPUT_SIDE, 8),
    ),
    ParamSpec(
        "input_height",
        0,
        "Network input height in pixels (multiple of 8); 0 = the model's own "
        "input size (set both or neither)." + RELOAD_NOTE,
        int_range=(0, MAX_INPUT_SIDE, 8),
    ),
    ParamSpec(
        "resize",
        _RUNTIME["resize"],
        "How frames fit the network input: 'stretch' or 'letterbox' (keeps "
        "the aspect ratio). Masks always come back at the input resolution." + RELOAD_NOTE,
        choices=RESIZE_MODES,
    ),
    ParamSpec(
        "upsample",
        _RUNTIME["upsample"],
        "'logits': bilinear logits at the frame resolution, then argmax "
        "(smooth edges); 'labels': argmax at 1/8, then nearest (cheaper, blockier)." + RELOAD_NOTE,
        choices=UPSAMPLE_MODES,
    ),
    ParamSpec(
        "input_topics",
        ["image"],
        "Camera topics, one subscription each (relative names "
        "follow remapping: -r image:=/camera/image_raw)." + RELOAD_NOTE,
        kind="str_list",
    ),
    ParamSpec(
        "camera_names",
        [],
        "Names for the cameras' output namespaces (~/<name>/mask) when "
        "there are several; default cam0, cam1, ..." + RELOAD_NOTE,
        kind="str_list",
    ),
    ParamSpec(
        "input_transport",
        "raw",
        "'raw' subscribes sensor_msgs/Image on each topic; "
        "'compressed' subscribes sensor_msgs/CompressedImage on <topic>/compressed." + RELOAD_NOTE,
        choices=TRANSPORTS,
    ),
    ParamSpec(
        "input_qos",
        "sensor_data",
        "Camera subscription QoS: 'sensor_data' (best effort, "
        "accepts best-effort and reliable publishers), 'best_effort', 'reliable' or "
        "'system_default'." + RELOAD_NOTE,
        choices=INPUT_QOS,
    ),
    ParamSpec(
        "input_qos_depth",
        1,
        "Camera subscription history depth (the node keeps only the latest frame per camera anyway)." + RELOAD_NOTE,
        int_range=(1, 100, 1),
    ),
    ParamSpec(
        "output_qos",
        "reliable",
        "Output QoS reliability ('reliable' is what RViz uses by default)." + RELOAD_NOTE,
        choices=OUTPUT_QOS,
    ),
    ParamSpec("output_qos_depth", 1, "Output history depth." + RELOAD_NOTE, int_range=(1, 100, 1)),
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
        "Publish ~/confidence (mono8, the calibrated probability * 255: max softmax with the weights' "
        "fitted temperature and curve).",
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
        "Period of the /diagnostics status." + RELOAD_NOTE,
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
        "down many times)." + RELOAD_NOTE,
        int_range=(0, 256, 1),
    ),
    ParamSpec("warmup", True, "Run one inference at load so the first frame is not slow." + RELOAD_NOTE),
    ParamSpec(
        "foxglove_port",
        0,
        "Also serve the first camera's image, colour mask, overlay and latency to Foxglove or "
        "Lichtblick over the Foxglove WebSocket protocol on this port of foxglove_address "
        "(needs foxglove-sdk); 0 = off." + RELOAD_NOTE,
        int_range=(0, 65535, 1),
    ),
    ParamSpec(
        "foxglove_address",
        "127.0.0.1",
        "Address the Foxglove view listens on: 127.0.0.1 = this computer only; '0.0.0.0' (or "
        "'::') serves the camera stream to every network the computer is on." + RELOAD_NOTE,
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
