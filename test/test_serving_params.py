"""The streaming layer's ROS-free logic: parameter rules, latest-frame slots, statistics, log
throttling, label info, the parameter file and what the launch files compute."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from bevanet_core.serving import launch_plan
from bevanet_core.serving.labels import FALLBACK_SCHEMA, label_info_dict, label_info_json
from bevanet_core.serving.params import (
    PARAMS,
    SPECS,
    NodeSettings,
    ParameterError,
    params_yaml,
    reload_needed,
    validate_value,
)
from bevanet_core.serving.slots import LatestFrameSlots
from bevanet_core.serving.stats import LatencyWindow, LogThrottle, RateMeter, StreamStats, percentile

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------- parameters


def test_every_parameter_has_a_description_and_a_valid_default():
    for spec in PARAMS:
        assert len(spec.description) > 20, spec.name
        if spec.default != []:
            validate_value(spec.name, spec.default)
    assert NodeSettings.from_values({}) == NodeSettings()


def test_reload_parameters_are_read_only_and_display_ones_are_not():
    reload = ["weights", "engine", "backend", "device", "precision", "input_width", "input_topics", "input_qos"]
    assert set(reload_needed(reload + ["overlay_alpha"])) == set(reload)
    for name in (
        "overlay_alpha",
        "publish_mask",
        "publish_color_mask",
        "publish_overlay",
        "publish_confidence",
        "batch_window_ms",
    ):
        assert not SPECS[name].read_only, name


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("backend", "tensorflow", ["backend", "tensorflow", "onnxruntime"]),
        ("precision", "fp64", ["precision", "fp64"]),
        ("input_width", 100, ["input_width", "100", "multiple of 8"]),
        ("input_width", 8192, ["input_width", "8192"]),
        ("overlay_alpha", 1.5, ["overlay_alpha", "1.5"]),
        ("overlay_alpha", "half", ["overlay_alpha", "type float"]),
        ("publish_mask", 1, ["publish_mask", "type bool"]),
        ("device", "gpu0", ["device", "gpu0"]),
        ("input_topics", [], ["input_topics", "empty"]),
        ("input_topics", ["a", "a"], ["twice"]),
        ("input_topics", ["has space"], ["invalid topic"]),
        ("input_topics", ["/ok/image", "9bad"], ["9bad"]),
        ("camera_names", ["front", "front"], ["twice"]),
        ("camera_names", ["front/left"], ["front/left"]),
        ("input_qos", "keep_all", ["sensor_data"]),
        ("foxglove_address", "my-laptop", ["foxglove_address", "my-laptop", "IP address"]),
        ("foxglove_address", "", ["foxglove_address"]),
        ("nonsense", 1, ["unknown parameter"]),
    ],
)
def test_bad_values_are_named(name, value, words):
    with pytest.raises(ParameterError) as err:
        validate_value(name, value)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"input_width": 64}, ["input_width", "input_height", "both"]),
        ({"input_topics": ["a", "b"], "camera_names": ["x"]}, ["camera_names", "1 names for 2"]),
        ({"engine": "/m.onnx", "backend": "torch"}, ["engine", "onnxruntime", "openvino"]),
        ({"backend": "tensorrt", "engine": "/m.engine"}, ["tensorrt", "cuda"]),
        ({"variant": "bevanet"}, ["bevanet", "weights"]),
    ],
)
def test_rules_between_parameters(values, words):
    with pytest.raises(ParameterError) as err:
        NodeSettings.from_values(values)
    for word in words:
        assert word in str(err.value)


def test_settings_resolution():
    s = NodeSettings.from_values(
        {
            "input_width": 64,
            "input_height": 48,
            "input_topics": ["/a", "/b"],
            "camera_names": [],
            "overlay_alpha": 1,
            "weights": "w.safetensors",
        }
    )
    assert s.input_size == (64, 48) and s.model_path == "w.safetensors"
    assert s.cameras == ["cam0", "cam1"] and s.output_prefix(1) == "~/cam1/"
    assert isinstance(s.overlay_alpha, float)
    one = NodeSettings.from_values({"camera_names": None})
    assert one.output_prefix(0) == "~/" and one.input_size is None and one.model_path is None
    engine = NodeSettings.from_values({"backend": "onnxruntime", "engine": "m.onnx", "weights": "w.pt"})
    assert engine.model_path == "m.onnx"
    updated = s.with_updates({"overlay_alpha": 0.2})
    assert updated.overlay_alpha == 0.2 and s.overlay_alpha == 1.0
    with pytest.raises(ParameterError):
        s.with_updates({"input_height": 0})


# ---------------------------------------------------------------- latest-frame slots


def test_slots_keep_only_the_newest_frame_and_count_drops():
    slots = LatestFrameSlots(2)
    assert not slots.put(0, "a1")
    assert slots.put(0, "a2")  # a1 dropped unseen
    assert slots.put(0, "a3")
    assert slots.dropped == 2
    assert slots.take(timeout_s=0.1) == [(0, "a3")]
    slots.task_done()
    assert slots.take(timeout_s=0.05) == []


def test_slots_memory_is_bounded_under_any_rate():
    slots = LatestFrameSlots(3)
    for i in range(10_000):
        slots.put(i % 3, bytearray(10))
    assert len(slots.take(timeout_s=0.1)) == 3
    assert slots.dropped == 10_000 - 3


def test_slots_batch_cameras_that_arrive_together():
    slots = LatestFrameSlots(2)
    slots.put(0, "f0")
    slots.put(1, "r0")
    slots.take(timeout_s=0.1)
    slots.task_done()  # both cameras are now "active"
    slots.put(0, "f1")
    threading.Timer(0.05, slots.put, args=(1, "r1")).start()
    t0 = time.monotonic()
    got = slots.take(batch_window_s=2.0, timeout_s=1.0)
    assert got == [(0, "f1"), (1, "r1")]
    assert time.monotonic() - t0 < 1.5  # returned as soon as the second camera arrived
    slots.task_done()


def test_slots_do_not_wait_for_a_silent_camera():
    clock = FakeClock()
    slots = LatestFrameSlots(2, active_timeout_s=1.0, clock=clock)
    slots.put(1, "old")
    slots.take(timeout_s=0.0)
    slots.task_done()
    clock.t += 5.0  # camera 1 went silent
    slots.put(0, "f")
    t0 = time.monotonic()
    assert slots.take(batch_window_s=5.0, timeout_s=1.0) == [(0, "f")]
    assert time.monotonic() - t0 < 1.0


def test_slots_wait_idle_and_close():
    slots = LatestFrameSlots(1)
    slots.put(0, "x")
    assert not slots.wait_idle(0.05)
    worker_took = threading.Event()

    def worker():
        slots.take(timeout_s=1.0)
        worker_took.set()
        time.sleep(0.05)
        slots.task_done()

    threading.Thread(target=worker).start()
    assert slots.wait_idle(2.0) and worker_took.is_set()
    waiter = threading.Thread(target=lambda: slots.take(timeout_s=None))
    waiter.start()
    slots.close()
    waiter.join(2.0)
    assert not waiter.is_alive() and slots.closed
    assert not slots.put(0, "late")


# ---------------------------------------------------------------- statistics


def test_rate_meter():
    clock = FakeClock(0.0)
    meter = RateMeter(window_s=2.0, clock=clock)
    assert meter.rate() == 0.0
    for i in range(21):
        clock.t = i * 0.1  # 10 Hz
        meter.tick()
    assert meter.rate() == pytest.approx(10.0, rel=0.01)
    clock.t = 10.0
    assert meter.rate() == 0.0  # old events leave the window


def test_latency_window_and_percentile():
    win = LatencyWindow(size=100)
    assert win.summary()["n"] == 0
    for v in range(1, 201):
        win.add(v)
    s = win.summary()
    assert s["n"] == 100 and s["max"] == 200 and s["p50"] == pytest.approx(150.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_log_throttle_per_kind():
    clock = FakeClock()
    throttle = LogThrottle(period_s=5.0, clock=clock)
    assert throttle.allow("zero_size") == (True, 0)
    assert throttle.allow("zero_size") == (False, 0)
    assert throttle.allow("zero_size") == (False, 0)
    assert throttle.allow("unknown_encoding") == (True, 0)  # another problem: its own budget
    clock.t += 5.0
    assert throttle.allow("zero_size") == (True, 2)  # says how many were suppressed


def test_node_stats_snapshot():
    clock = FakeClock(0.0)
    stats = StreamStats(["front", "rear"], clock=clock)
    for i in range(5):
        clock.t = i * 0.5
        stats.on_received("front")
    stats.on_dropped(3)
    stats.on_bad_frame("zero_size", "bad")
    stats.on_batch(40.0)
    stats.on_published(55.0)
    snap = stats.snapshot()
    assert snap["frames_received"] == 5 and snap["frames_received[front]"] == 5
    assert snap["input_rate_hz[front]"] == pytest.approx(2.0) and snap["input_rate_hz[rear]"] == 0.0
    assert snap["frames_dropped_stale"] == 3 and snap["frames_bad"] == 1 and snap["frames_bad[zero_size]"] == 1
    assert snap["inference_ms_mean"] == 40.0 and snap["end_to_end_ms_max"] == 55.0
    assert snap["last_error"] == "bad"
    json.dumps(snap)


# ---------------------------------------------------------------- label info


def test_label_info_fallback_json():
    data = json.loads(
        label_info_json(
            ["Sky", "Road"],
            [[128, 128, 128], [128, 64, 128]],
            ignore_index=255,
            variant="bevanet_s",
            dataset="camvid",
        )
    )
    assert data["schema"] == FALLBACK_SCHEMA
    assert data["classes"] == [
        {"id": 0, "name": "Sky", "color": [128, 128, 128]},
        {"id": 1, "name": "Road", "color": [128, 64, 128]},
    ]
    assert data["ignore_index"] == 255 and data["dataset"] == "camvid"
    with pytest.raises(ValueError, match="palette"):
        label_info_dict(["a", "b"], [[0, 0, 0]])


# ---------------------------------------------------------------- launch logic (plain Python)


def test_enumerations_come_from_the_runtime_and_the_registry():
    from bevanet_core.imaging.processing import UPSAMPLE_MODES
    from bevanet_core.models import list_models
    from bevanet_core.runtime import BACKENDS, RESIZE_MODES, SegmenterConfig
    from bevanet_core.runtime.backend import PRECISIONS
    from bevanet_core.serving.params import RUNTIME_PARAMS, VARIANTS

    assert list(VARIANTS) == list_models()
    assert SPECS["variant"].choices == ("",) + VARIANTS
    assert SPECS["backend"].choices == BACKENDS and SPECS["precision"].choices == PRECISIONS
    assert SPECS["resize"].choices == RESIZE_MODES
    assert SPECS["upsample"].choices == UPSAMPLE_MODES
    runtime = SegmenterConfig()
    for name in RUNTIME_PARAMS:
        assert SPECS[name].default == getattr(runtime, name), name
    # the settings object has exactly the spec's fields, defaults and types
    defaults = NodeSettings()
    for spec in PARAMS:
        value = getattr(defaults, spec.name)
        assert value == (tuple(spec.default) if spec.type_name == "str_list" else spec.default)
    assert [f.name for f in dataclasses.fields(NodeSettings)] == [p.name for p in PARAMS]


def test_segmenter_config_carries_the_runtime_parameters():
    settings = NodeSettings.from_values(
        {
            "weights": "/m.safetensors",
            "variant": "pidnet_s",
            "backend": "onnxruntime",
            "precision": "fp16",
            "resize": "letterbox",
            "upsample": "labels",
            "input_width": 640,
            "input_height": 480,
            "num_threads": 3,
        }
    )
    cfg = settings.segmenter_config()
    assert (cfg.weights, cfg.variant, cfg.backend, cfg.precision) == (
        "/m.safetensors",
        "pidnet_s",
        "onnxruntime",
        "fp16",
    )
    assert (cfg.resize, cfg.upsample, cfg.input_size) == ("letterbox", "labels", (640, 480))
    assert cfg.num_threads == 3  # every backend's threads
    assert NodeSettings.from_values({}).segmenter_config().num_threads is None  # 0 = defaults
    assert NodeSettings.from_values({}).segmenter_config().backend == "auto"
    engine = NodeSettings.from_values({"engine": "/m.onnx", "backend": "onnxruntime"})
    assert engine.segmenter_config().weights == "/m.onnx"


def test_the_parameter_file_is_the_spec():
    path = REPO / "config" / launch_plan.PARAMS_FILE
    assert path.read_text() == params_yaml(), (
        "config/segmentation.yaml differs from the spec; rewrite it with "
        "`python -m bevanet_core.serving.params > config/segmentation.yaml`"
    )
    values = launch_plan.load_params_file(str(path))
    # an empty string array cannot be written in a ROS parameter YAML: camera_names is a comment
    assert set(SPECS) - set(values) == {"camera_names"} and "# camera_names:" in path.read_text()
    assert values == {p.name: p.default for p in PARAMS if p.name != "camera_names"}


def test_each_variant_validates_with_the_parameter_file():
    base = launch_plan.load_params_file(str(REPO / "config" / launch_plan.PARAMS_FILE))
    for variant in launch_plan.VARIANTS:
        values = dict(base, **launch_plan.variant_parameters(variant))
        if variant != launch_plan.DEFAULT_WEIGHTS_VARIANT:
            assert values["device"] == "cuda" and values["precision"] == "fp16"
            values["weights"] = f"/m/{variant}.safetensors"
        assert NodeSettings.from_values(values).variant == variant


def test_plan_launch_for_each_variant():
    share = str(REPO)  # the source tree has the installed share layout (config/, launch/)
    plan = launch_plan.plan_launch(launch_plan.default_arguments(), share)
    assert plan.params_file == str(REPO / "config" / "segmentation.yaml")
    assert plan.variant_parameters == {"variant": "bevanet_s"}
    assert plan.overrides == {"use_sim_time": False, "input_topics": ["/camera/image_raw"]}
    assert plan.node_name == "segmentation" and not plan.rviz
    assert plan.rviz_config.endswith("/rviz/segmentation.rviz")  # written at launch, under the cache folder

    args = dict(
        launch_plan.default_arguments(),
        variant="bevanet",
        weights="/m/bevanet.safetensors",
        backend="onnxruntime",
        camera_topics="/front/image_raw, /rear/image_raw",
        namespace="perception",
        use_sim_time="true",
        rviz="True",
    )
    plan = launch_plan.plan_launch(args, share)
    assert plan.params_file.endswith("config/segmentation.yaml")
    assert plan.variant_parameters == {"variant": "bevanet", "device": "cuda", "precision": "fp16"}
    assert plan.overrides == {
        "use_sim_time": True,
        "backend": "onnxruntime",
        "weights": "/m/bevanet.safetensors",
        "input_topics": ["/front/image_raw", "/rear/image_raw"],
    }
    assert plan.namespace == "perception" and plan.rviz


def test_launch_arguments_describe_the_parameters_they_set():
    described = {name: text for name, _, text in launch_plan.LAUNCH_ARGUMENTS}
    for name in launch_plan.PARAM_ARGUMENTS:
        assert described[name].startswith(SPECS[name].description.split(" Read-only")[0])
    assert "onnxruntime" in described["backend"] and "compressed" in described["input_transport"]
    for variant in launch_plan.VARIANTS:
        assert variant in described["variant"]


@pytest.mark.parametrize(
    "args, words",
    [
        ({"variant": "bevanet_xl"}, ["variant", "bevanet_xl", "bevanet_s"]),
        ({"variant": "bevanet"}, ["bevanet", "weights"]),  # no shipped BEVANet weights
        ({"use_sim_time": "maybe"}, ["use_sim_time", "maybe"]),
        ({"rviz": "2"}, ["rviz"]),
        ({"camera_topics": " , "}, ["camera_topics"]),
        ({"camera_topics": "/a b"}, []),  # two topics, valid
        ({"backend": "tensorrt"}, ["tensorrt", "cuda"]),
        ({"log_level": "loud"}, ["log_level"]),
        ({"input_size": "640"}, ["input_size", "WxH", "'640'"]),
        ({"input_size": "644x480"}, ["input_width", "644", "multiple of 8"]),  # the node's own rule
    ],
)
def test_plan_launch_errors_name_the_argument(args, words):
    merged = dict(launch_plan.default_arguments(), **args)
    if not words:
        assert launch_plan.plan_launch(merged, str(REPO)).overrides["input_topics"] == [
            "/a",
            "b",
        ]
        return
    with pytest.raises(ValueError) as err:
        launch_plan.plan_launch(merged, str(REPO))
    for word in words:
        assert word in str(err.value)


def test_input_size_argument_sets_both_input_parameters():
    args = dict(launch_plan.default_arguments(), input_size=" 640x480 ")
    overrides = launch_plan.plan_launch(args, str(REPO)).overrides
    assert (overrides["input_width"], overrides["input_height"]) == (640, 480)
    unset = launch_plan.plan_launch(launch_plan.default_arguments(), str(REPO)).overrides
    assert "input_width" not in unset and "input_height" not in unset


def test_every_node_parameter_is_a_launch_argument():
    names = [name for name, _, _ in launch_plan.LAUNCH_ARGUMENTS]
    assert len(names) == len(set(names)), "a launch argument is declared twice"
    for spec in PARAMS:
        via = launch_plan.COVERED_PARAMS.get(spec.name, spec.name)
        assert via in names, f"node parameter {spec.name!r} cannot be set from the launch line"
    assert set(launch_plan.PARAM_ARGUMENTS) == {p.name for p in PARAMS} - set(launch_plan.COVERED_PARAMS)
    # the parameter arguments default to empty: config/segmentation.yaml (or params_file) decides
    defaults = launch_plan.default_arguments()
    assert all(defaults[name] == "" for name in launch_plan.PARAM_ARGUMENTS)


def test_parameter_launch_arguments_reach_the_node_typed():
    args = dict(
        launch_plan.default_arguments(),
        num_threads="1",
        foxglove_port="8765",
        foxglove_address="0.0.0.0",
        precision="bf16",
        overlay_alpha="1",
        publish_confidence="True",
        warmup="off",
        camera_names="[front, 'rear']",
        camera_topics="/f/image_raw,/r/image_raw",
        health_frozen_frames="30",
    )
    overrides = launch_plan.plan_launch(args, str(REPO)).overrides
    assert overrides == {
        "use_sim_time": False,
        "input_topics": ["/f/image_raw", "/r/image_raw"],
        "num_threads": 1,
        "foxglove_port": 8765,
        "foxglove_address": "0.0.0.0",
        "precision": "bf16",
        "overlay_alpha": 1.0,
        "publish_confidence": True,
        "warmup": False,
        "camera_names": ["front", "rear"],
        "health_frozen_frames": 30,
    }
    # ROS declares a parameter's type from its default: the values keep the spec's types
    for name, value in overrides.items():
        if name in SPECS and SPECS[name].type_name in ("int", "float", "bool"):
            assert type(value) is type(SPECS[name].default), name


@pytest.mark.parametrize(
    "args, words",
    [
        ({"num_threads": "two"}, ["'num_threads'", "integer", "'two'"]),
        ({"num_threads": "999"}, ["num_threads", "999", "[0, 256]"]),  # the node's own range
        ({"overlay_alpha": "half"}, ["'overlay_alpha'", "number"]),
        ({"publish_mask": "maybe"}, ["'publish_mask'", "true or false"]),
        ({"resize": "crop"}, ["resize", "crop", "letterbox"]),
        ({"foxglove_port": "70000"}, ["foxglove_port", "70000"]),
        ({"camera_names": "[a, b"}, ["'camera_names'", "list"]),
    ],
)
def test_parameter_launch_arguments_refuse_bad_values_naming_them(args, words):
    with pytest.raises(ValueError) as err:
        launch_plan.plan_launch(dict(launch_plan.default_arguments(), **args), str(REPO))
    for word in words:
        assert word in str(err.value), str(err.value)


def test_parse_camera_topics_forms():
    assert launch_plan.parse_camera_topics("/a") == ["/a"]
    assert launch_plan.parse_camera_topics("['/a', '/b']") == ["/a", "/b"]
    assert launch_plan.parse_camera_topics("/a,/b , /c") == ["/a", "/b", "/c"]


def test_rviz_composable_and_container_arguments():
    plan = launch_plan.plan_launch(launch_plan.default_arguments(), str(REPO))
    assert (plan.rviz, plan.composable, plan.container) == (False, False, "")
    auto = launch_plan.plan_launch(dict(launch_plan.default_arguments(), rviz="auto"), str(REPO))
    assert auto.rviz
    into = dict(launch_plan.default_arguments(), container="/perception/ComponentManager", composable="true")
    plan = launch_plan.plan_launch(into, str(REPO))
    assert plan.composable and plan.container == "/perception/ComponentManager"
    with pytest.raises(ValueError, match="'container'"):
        launch_plan.plan_launch(dict(launch_plan.default_arguments(), container="not a name"), str(REPO))


def test_output_topic_names():
    assert launch_plan.output_topic("", "segmentation", "mask") == "/segmentation/mask"
    assert launch_plan.output_topic("/perception/", "seg", "overlay", "front") == "/perception/seg/front/overlay"
