"""What the launch files compute, in plain Python (no `launch` import), so it is tested anywhere.

`segmentation.launch.py` declares `LAUNCH_ARGUMENTS`, gives the node `config/segmentation.yaml`
from the package share (found with FindPackageShare), then `variant_parameters(variant)`, then
the non-empty launch arguments (`node_overrides`); `plan_launch` does all of that from plain
strings and checks the result with the node's own rules. Every node parameter of the spec table
(`serving.params.PARAMS`) is a launch argument of the same name (`PARAM_ARGUMENTS`, generated
from the table), except the four that friendlier arguments set: `variant`, `camera_topics`
(input_topics) and `input_size` (input_width and input_height).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from bevanet_core.options import parse_size

from .params import DEFAULT_WEIGHTS_VARIANT, PARAMS, SPECS, VARIANTS, NodeSettings, ParameterError, ParamSpec
from .rviz_config import expand_topic_name, rviz_config_path

PACKAGE = "bevanet_ros"
PARAMS_FILE = "segmentation.yaml"
RVIZ_CONFIG = "segmentation.rviz"
NODE_NAME = "segmentation"
NODE_EXECUTABLE = "segmentation_node"
CONTAINER_EXECUTABLE = "component_container"
COMPONENT = "bevanet_ros::SegmentationNode"
# node parameters set by a launch argument of another name (or with a default of its own)
COVERED_PARAMS = {
    "variant": "variant",
    "input_topics": "camera_topics",
    "input_width": "input_size",
    "input_height": "input_size",
}
# launch arguments that set the node parameter of the same name when not empty: every other one
PARAM_ARGUMENTS: tuple[str, ...] = tuple(p.name for p in PARAMS if p.name not in COVERED_PARAMS)
_KEEP = " Empty keeps the value of config/" + PARAMS_FILE + "."


_TYPE_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str_list": "a list"}


def _param_argument(name: str) -> tuple[str, str, str]:
    spec = SPECS[name]
    text = spec.description.split(" Read-only")[0]
    if spec.constraints:
        text += f" ({spec.constraints})"
    elif spec.type_name in ("bool", "str_list"):
        text += f" ({_TYPE_WORDS[spec.type_name]}" + (", comma separated)" if spec.type_name == "str_list" else ")")
    return (name, "", text + _KEEP)


# (name, default, description): every argument of segmentation.launch.py
LAUNCH_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    (
        "variant",
        DEFAULT_WEIGHTS_VARIANT,
        "Network variant; the ones without shipped weights need weights:= and default to "
        "cuda fp16. One of: " + ", ".join(VARIANTS),
    ),
    (
        "input_size",
        "",
        "Network input WxH, multiples of 8 (e.g. 640x480: thin objects such as poles are found "
        "more often, at more time a frame); sets input_width and input_height." + _KEEP,
    ),
    (
        "camera_topics",
        "/camera/image_raw",
        "Camera image topics, comma separated (e.g. /front/image_raw,/rear/image_raw); one subscription each",
    ),
    (
        "params_file",
        "",
        "Node parameter YAML ('/**: ros__parameters: ...'); empty = config/" + PARAMS_FILE + " from the package share",
    ),
    ("namespace", "", "Namespace for the node (and its ~/mask, ~/overlay... topics)"),
    ("node_name", NODE_NAME, "Name of the segmentation node"),
    ("use_sim_time", "false", "Use /clock (true when replaying bags with --clock)"),
    (
        "rviz",
        "false",
        "true or auto: write an RViz view of this launch's topics (namespace, cameras, raw or "
        "compressed) to <cache>/rviz/<namespace>_<node_name>.rviz and start rviz2 with it; where rviz2 "
        "is not installed, a note gives the file's path instead. false: neither",
    ),
    ("log_level", "info", "Node log level (debug, info, warn, error)"),
    (
        "composable",
        "false",
        "true: run the node as the component " + COMPONENT + " in a new component container "
        "(<node_name>_container, a ComposableNodeContainer) instead of its own process",
    ),
    (
        "container",
        "",
        "Load the node into this running component container (e.g. /ComponentManager, from "
        "`ros2 run bevanet_ros component_container`) instead of starting a process",
    ),
    *(_param_argument(name) for name in PARAM_ARGUMENTS),
)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def variant_parameters(variant: str) -> dict[str, Any]:
    """What differs per variant: its name and, where no weights are shipped for it (it is meant
    for a GPU), device cuda and precision fp16. An unknown variant raises ValueError."""
    if variant not in VARIANTS:
        raise ValueError(f"launch argument 'variant' is {variant!r}; expected one of: {', '.join(VARIANTS)}")
    if variant == DEFAULT_WEIGHTS_VARIANT:
        return {"variant": variant}
    return {"variant": variant, "device": "cuda", "precision": "fp16"}


def params_file(share_dir: str) -> str:
    """Absolute path of config/segmentation.yaml inside the package share directory."""
    return os.path.join(share_dir, "config", PARAMS_FILE)


def parse_bool(name: str, text: str) -> bool:
    """'true'/'false' (any case, also 1/0, yes/no, on/off); anything else raises ValueError."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"launch argument {name!r} must be true or false, got {text!r}")


def parse_rviz(text: str) -> bool:
    """'auto' or a boolean: whether RViz is wanted (it starts only where rviz2 is installed)."""
    if str(text).strip().lower() == "auto":
        return True
    return parse_bool("rviz", text)


def parse_camera_topics(text: str) -> list[str]:
    """'/a/image_raw, /b/image_raw' or "['/a', '/b']" -> ['/a/image_raw', '/b/image_raw']."""
    cleaned = str(text).strip().strip("[]")
    topics = [t.strip().strip("'\"") for t in re.split(r"[,\s]+", cleaned) if t.strip().strip("'\"")]
    if not topics:
        raise ValueError("launch argument 'camera_topics' is empty; give at least one topic")
    return topics


def parse_input_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); the node's own rules (multiples of 8, range) are checked later."""
    return parse_size(str(text), "launch argument 'input_size'")


def parse_list(name: str, text: str) -> list[str]:
    """'a,b' or "[a, 'b']" -> ['a', 'b']; '[]' -> []."""
    cleaned = str(text).strip()
    if cleaned.startswith("[") != cleaned.endswith("]"):
        raise ValueError(f"launch argument {name!r} must be a comma separated list, got {text!r}")
    items = re.split(r"[,\s]+", cleaned.strip("[]"))
    return [t.strip().strip("'\"") for t in items if t.strip().strip("'\"")]


def parse_param_argument(spec: ParamSpec, text: str) -> Any:
    """The typed value of launch argument `spec.name` (a node parameter) from its text; raises
    ValueError naming the argument when the text is not of the parameter's type. Ranges and
    choices are the node's rules, checked on the merged parameters by `plan_launch`."""
    value = str(text).strip()
    kind = spec.type_name
    try:
        if kind == "bool":
            return parse_bool(spec.name, value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        raise ValueError(f"launch argument {spec.name!r} must be {_TYPE_WORDS[kind]}, got {text!r}") from None
    if kind == "str_list":
        return parse_list(spec.name, value)
    return value


def load_params_file(path: str) -> dict[str, Any]:
    """The `ros__parameters` of a node parameter YAML (under '/**' or any node key)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of node names to ros__parameters")
    for section in data.values():
        if isinstance(section, dict) and "ros__parameters" in section:
            return dict(section["ros__parameters"] or {})
    raise ValueError(f"{path}: no 'ros__parameters' section (expected '/**: {{ros__parameters: ...}}')")


def node_overrides(args: Mapping[str, str]) -> dict[str, Any]:
    """Node parameters from launch arguments; empty arguments override nothing."""
    out: dict[str, Any] = {"use_sim_time": parse_bool("use_sim_time", args.get("use_sim_time", "false"))}
    for name in PARAM_ARGUMENTS:
        value = str(args.get(name, "")).strip()
        if value:
            out[name] = parse_param_argument(SPECS[name], value)
    size = str(args.get("input_size", "")).strip()
    if size:
        out["input_width"], out["input_height"] = parse_input_size(size)
    topics = args.get("camera_topics", "")
    if str(topics).strip():
        out["input_topics"] = parse_camera_topics(topics)
    return out


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """Everything the launch file needs to build its actions."""

    params_file: str
    variant_parameters: dict[str, Any]
    overrides: dict[str, Any]
    namespace: str
    node_name: str
    rviz: bool
    rviz_config: str  # where the RViz view of this launch's topics is written
    log_level: str
    composable: bool = False
    container: str = ""
    settings: NodeSettings | None = None  # the node's merged parameters (None without check_file)


def plan_launch(args: Mapping[str, str], share_dir: str, check_file: bool = True) -> LaunchPlan:
    """Resolves the launch arguments; raises ValueError with the argument's name on bad values.

    The merged parameters (YAML + overrides) are validated with the node's own rules, so a bad
    combination fails at launch time with the same message the node would give.
    """
    variant = str(args.get("variant", DEFAULT_WEIGHTS_VARIANT)).strip()
    given = str(args.get("params_file", "")).strip()
    path = os.path.abspath(os.path.expanduser(given)) if given else params_file(share_dir)
    per_variant = variant_parameters(variant)
    overrides = node_overrides(args)
    settings = None
    if check_file:
        if not os.path.isfile(path):
            which = "launch argument 'params_file'" if given else "parameter file"
            raise ValueError(f"{which}: {path} does not exist")
        merged = load_params_file(path)
        merged.update(per_variant)
        merged.update(overrides)
        merged.pop("use_sim_time", None)
        try:
            settings = NodeSettings.from_values(merged)
        except ParameterError as exc:
            raise ValueError(f"variant {variant!r} ({path}) with the given launch arguments: {exc}") from None
    namespace = str(args.get("namespace", "")).strip()
    container = str(args.get("container", "")).strip()
    if container and not re.match(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$", container):
        raise ValueError(
            f"launch argument 'container' must be a node name such as /ComponentManager, got {container!r}"
        )
    log_level = str(args.get("log_level", "info")).strip().lower()
    if log_level not in ("debug", "info", "warn", "error", "fatal"):
        raise ValueError(f"launch argument 'log_level' must be debug, info, warn, error or fatal, got {log_level!r}")
    node_name = str(args.get("node_name", NODE_NAME)).strip() or NODE_NAME
    return LaunchPlan(
        params_file=path,
        variant_parameters=per_variant,
        overrides=overrides,
        namespace=namespace,
        node_name=node_name,
        rviz=parse_rviz(args.get("rviz", "false")),
        rviz_config=str(rviz_config_path(namespace, node_name)),
        log_level=log_level,
        composable=parse_bool("composable", args.get("composable", "false")),
        container=container,
        settings=settings,
    )


def default_arguments() -> dict[str, str]:
    """{name: default} of LAUNCH_ARGUMENTS."""
    return {name: default for name, default, _ in LAUNCH_ARGUMENTS}


def output_topic(namespace: str, node_name: str, output: str, camera: str | None = None) -> str:
    """Fully qualified output topic, e.g. ('', 'segmentation', 'mask') -> '/segmentation/mask'."""
    return expand_topic_name(f"~/{camera}/{output}" if camera else f"~/{output}", namespace, node_name)
