"""The segmentation node over real DDS (rclpy wheels, rmw_fastrtps): headers, QoS, encodings,
compressed input, outputs, label info, diagnostics, parameters, multi-camera, composition and
the `python -m` entry point. Seeded tiny models keep every inference small."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_ros_support import (  # noqa: E402
    DOMAIN_ID,
    WAIT_S,
    Probe,
    camera_frame,
    compressed_msg,
    image_msg,
    params,
    publish_until,
    ros_context,
    seeded_weights,
    spinning,
    stamp_ns,
    wait_for_subscribers,
)

from bevanet_core.serving.decode import image_to_rgb  # noqa: E402
from bevanet_core.serving.model_loading import ModelLoadError  # noqa: E402
from bevanet_core.serving.params import PARAMS, ParameterError  # noqa: E402
from bevanet_ros.segmentation_node import SegmentationNode  # noqa: E402

__all__ = ["ros_context", "seeded_weights"]  # fixtures used here


def mask_of(msg: Image) -> np.ndarray:
    assert msg.encoding == "mono8"
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width]


@pytest.fixture(scope="module")
def served(ros_context, seeded_weights):
    """One node (confidence on) and a probe, spinning together for the module."""
    node = SegmentationNode(
        context=ros_context,
        parameter_overrides=params(seeded_weights, publish_confidence=True, batch_window_ms=0.0),
    )
    probe = Probe(ros_context, "probe_main")
    with spinning(ros_context, node, probe.node):
        yield node, probe
    probe.destroy()
    node.destroy_node()


@pytest.fixture(scope="module")
def reference(seeded_weights):
    """The bare runtime on the same weights, for exact comparisons."""
    from bevanet_core.runtime import Segmenter, SegmenterConfig

    seg = Segmenter(SegmenterConfig(weights=str(seeded_weights)))
    yield seg
    seg.close()


def test_mask_keeps_header_resolution_and_matches_runtime(served, reference):
    node, probe = served
    masks = probe.subscribe("/segmentation/mask")
    pub = probe.publisher("image", reliable=True)
    wait_for_subscribers(pub)
    frame = camera_frame(80, 60, seed=1)
    sent = publish_until(
        pub,
        lambda i: image_msg(frame, "rgb8", 1_700_000_000_123_456_789 + i, "cam_optical"),
        masks,
    )
    out = next((m for m in masks.items if m.header.frame_id == "cam_optical"), None)
    assert out is not None, "no mask received"
    sent_stamps = {stamp_ns(m.header) for m in sent}
    assert stamp_ns(out.header) in sent_stamps
    assert out.header.frame_id == "cam_optical"
    assert (out.width, out.height, out.encoding, out.step) == (80, 60, "mono8", 80)
    expected = reference.segment(frame, "rgb8").mask
    np.testing.assert_array_equal(mask_of(out), expected)
    assert set(np.unique(expected)) <= set(range(11))


def test_best_effort_and_reliable_camera_publishers(served):
    node, probe = served
    masks = probe.subscribe("/segmentation/mask")
    pubs = {
        "be": probe.publisher("image", reliable=False),
        "rel": probe.publisher("image", reliable=True),
    }
    for pub in pubs.values():
        wait_for_subscribers(pub)
    frame = camera_frame(80, 60, seed=2)
    for name, pub in pubs.items():
        deadline = time.monotonic() + WAIT_S
        i = 0
        while time.monotonic() < deadline and not any(m.header.frame_id == name for m in masks.items):
            pub.publish(image_msg(frame, "bgr8", 10 + i, name))
            i += 1
            masks.wait(lambda items, name=name: any(m.header.frame_id == name for m in items), 0.3)
        assert any(m.header.frame_id == name for m in masks.items), f"no mask for the {name} publisher"


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_camera_encodings(served, reference, encoding):
    node, probe = served
    topic = "/segmentation/mask"
    masks = probe.subscribe(topic)
    pub = probe.publisher("image")
    wait_for_subscribers(pub)
    frame = camera_frame(80, 60, seed=3)
    publish_until(pub, lambda i: image_msg(frame, encoding, 1000 + i, encoding), masks)
    got = [m for m in masks.items if m.header.frame_id == encoding]
    assert got, f"no mask for {encoding}"
    assert (got[0].width, got[0].height) == (80, 60)
    sent = image_msg(frame, encoding)
    decoded = image_to_rgb(sent)
    np.testing.assert_array_equal(mask_of(got[0]), reference.segment(decoded, "rgb8").mask)
    if encoding in ("bgr8", "rgba8", "bgra8"):  # lossless: identical to the rgb8 mask
        np.testing.assert_array_equal(mask_of(got[0]), reference.segment(frame, "rgb8").mask)


def test_color_overlay_only_while_subscribed_and_confidence(served, reference):
    node, probe = served
    pub = probe.publisher("image")
    masks = probe.subscribe("/segmentation/mask")
    wait_for_subscribers(pub)
    frame = camera_frame(80, 60, seed=4)
    seg = node.pipeline.segmenter
    computed = {"colorize": 0, "overlay": 0}

    def counted(name):
        real = getattr(seg, name)

        def call(*args, **kwargs):
            computed[name] += 1
            return real(*args, **kwargs)

        return call

    seg.colorize, seg.overlay = counted("colorize"), counted("overlay")  # instance attributes
    try:
        publish_until(pub, lambda i: image_msg(frame, "rgb8", 2000 + i, "nocolor"), masks)
        assert masks.wait(lambda items: any(m.header.frame_id == "nocolor" for m in items))
        assert node.pipeline.stream.wait_idle(WAIT_S)
    finally:
        del seg.colorize, seg.overlay
    assert computed == {"colorize": 0, "overlay": 0}, "colour mask or overlay with no subscriber"

    colors = probe.subscribe("/segmentation/color_mask")
    overlays = probe.subscribe("/segmentation/overlay")
    conf = probe.subscribe("/segmentation/confidence")

    def first(col):
        return next((m for m in col.items if m.header.frame_id == "color"), None)

    deadline = time.monotonic() + WAIT_S
    i = 0
    while time.monotonic() < deadline and not (first(colors) and first(overlays) and first(conf)):
        pub.publish(image_msg(frame, "rgb8", 3000 + i, "color"))
        i += 1
        colors.wait(lambda items: any(m.header.frame_id == "color" for m in items), 0.3)
    assert first(colors) and first(overlays) and first(conf), "no colour mask / overlay / confidence"
    ref = reference.segment(frame, "rgb8", confidence=True)
    col = first(colors)
    assert (col.encoding, col.width, col.height, col.header.frame_id) == ("rgb8", 80, 60, "color")
    np.testing.assert_array_equal(
        np.frombuffer(bytes(col.data), np.uint8).reshape(60, 80, 3), reference.colorize(ref.mask)
    )
    ov = first(overlays)
    np.testing.assert_array_equal(
        np.frombuffer(bytes(ov.data), np.uint8).reshape(60, 80, 3),
        reference.overlay(frame, ref.mask, 0.5),
    )
    c = first(conf)
    assert (c.encoding, c.width, c.height, c.header.frame_id) == ("mono8", 80, 60, "color")
    np.testing.assert_array_equal(mask_of(c), ref.confidence)


def test_label_info_is_latched(served):
    node, probe = served
    # subscribed long after the node published it: transient-local delivers it anyway
    info = probe.subscribe("/segmentation/label_info_json", String, latched=True)
    assert info.wait_count(1, 20.0), "no latched label info"
    data = json.loads(info.items[0].data)
    from bevanet_core.data.classes import CAMVID_CLASSES, CAMVID_PALETTE

    assert [c["name"] for c in data["classes"]] == list(CAMVID_CLASSES)
    assert [c["color"] for c in data["classes"]] == [list(p) for p in CAMVID_PALETTE]
    assert data["ignore_index"] == 255
    # ~/label_info carries vision_msgs/LabelInfo or nothing: never a String stand-in
    types = dict(node.get_publisher_names_and_types_by_node(node.get_name(), "/"))
    try:
        from vision_msgs.msg import LabelInfo
    except ImportError:
        assert "/segmentation/label_info" not in types
        return
    assert types["/segmentation/label_info"] == ["vision_msgs/msg/LabelInfo"]
    label_info = probe.subscribe("/segmentation/label_info", LabelInfo, latched=True)
    assert label_info.wait_count(1, 20.0), "no latched LabelInfo"
    msg = label_info.items[0]
    assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(CAMVID_CLASSES))


def test_diagnostics(served):
    from diagnostic_msgs.msg import DiagnosticArray

    node, probe = served
    diag = probe.subscribe("/diagnostics", DiagnosticArray, depth=10)
    ok = diag.wait(
        lambda items: any("frames_received" in {kv.key for s in m.status for kv in s.values} for m in items),
        20.0,
    )
    assert ok, "no diagnostics from the node"
    status = [s for m in diag.items for s in m.status if "segmentation" in s.name][-1]
    keys = {kv.key: kv.value for kv in status.values}
    for key in (
        "input_rate_hz[cam0]",
        "output_rate_hz",
        "inference_ms_mean",
        "end_to_end_ms_mean",
        "end_to_end_ms_p95",
        "frames_dropped_stale",
        "frames_bad",
        "inference_errors",
    ):
        assert key in keys, key
    assert int(keys["frames_published"]) > 0
    assert float(keys["inference_ms_mean"]) > 0
    # the backend that runs (backend 'auto' by default), not the parameter's value
    assert status.hardware_id == f"{node.pipeline.segmenter.backend.name}:cpu"
    assert not status.hardware_id.startswith("auto")
    # and the whole pipeline, for tools that measure the node from outside (bag-eval --through-node)
    from bevanet_core.serving.model_loading import pipeline_from_values

    pipeline = pipeline_from_values((kv.key, kv.value) for kv in status.values)
    assert pipeline == node.pipeline.segmenter.pipeline


def test_parameters_descriptors_validation_and_dynamic_update(served):
    node, _ = served
    desc = node.describe_parameters(["weights", "overlay_alpha", "input_width", "input_qos"])
    assert desc[0].read_only and "shipped CamVid" in desc[0].description
    assert not desc[1].read_only
    assert desc[1].floating_point_range[0].from_value == 0.0 and desc[1].floating_point_range[0].to_value == 1.0
    assert desc[2].integer_range[0].step == 8
    assert "sensor_data" in desc[3].additional_constraints

    ok = node.set_parameters([Parameter("overlay_alpha", value=0.25)])[0]
    assert ok.successful and node.pipeline.settings.overlay_alpha == 0.25
    bad = node.set_parameters([Parameter("overlay_alpha", value=1.5)])[0]
    assert not bad.successful and node.pipeline.settings.overlay_alpha == 0.25
    ro = node.set_parameters([Parameter("weights", value="/tmp/other.safetensors")])[0]
    assert not ro.successful and "read-only" in ro.reason.lower()
    bad_window = node.set_parameters([Parameter("batch_window_ms", value=-1.0)])[0]
    assert not bad_window.successful
    assert node.set_parameters([Parameter("overlay_alpha", value=0.5)])[0].successful


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"input_width": 100, "input_height": 64}, "input_width"),
        ({"input_width": 64}, "input_height"),
        ({"device": "gpu"}, "device"),
        ({"resize": "crop"}, "resize"),
        ({"input_topics": ["ok", "bad topic"]}, "input_topics"),
        ({"camera_names": ["a", "b"]}, "camera_names"),
        ({"engine": "/x.onnx", "backend": "torch"}, "engine"),
    ],
)
def test_bad_parameters_fail_clearly_at_startup(ros_context, seeded_weights, overrides, needle):
    with pytest.raises((ParameterError, InvalidParameterValueException)) as err:
        SegmentationNode(
            "bad_params",
            context=ros_context,
            parameter_overrides=params(seeded_weights, **overrides),
        )
    assert needle in str(err.value)


def test_missing_weights_are_named(ros_context, tmp_path, monkeypatch):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ModelLoadError, match="'weights'.*does not exist"):
        SegmentationNode("no_weights", context=ros_context, parameter_overrides=params(missing))
    import bevanet_core.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_WEIGHTS", tmp_path / "bevanet_s_camvid.safetensors")
    with pytest.raises(ModelLoadError, match="shipped CamVid") as err:
        SegmentationNode("no_default", context=ros_context)
    assert "bevanet_s_camvid.safetensors" in str(err.value)


def test_compressed_input(ros_context, seeded_weights, reference):
    node = SegmentationNode(
        "seg_compressed",
        context=ros_context,
        parameter_overrides=params(seeded_weights, input_transport="compressed", input_topics=["cam/image_raw"]),
    )
    probe = Probe(ros_context, "probe_compressed")
    try:
        masks = probe.subscribe("/seg_compressed/mask")
        pub = probe.publisher("/cam/image_raw/compressed", CompressedImage, reliable=False)
        with spinning(ros_context, node, probe.node):
            wait_for_subscribers(pub)
            frame = camera_frame(80, 60, seed=5)
            publish_until(pub, lambda i: compressed_msg(frame, "png", 4000 + i, "png"), masks)
            png = [m for m in masks.items if m.header.frame_id == "png"]
            assert png, "no mask for the png frame"
            np.testing.assert_array_equal(mask_of(png[0]), reference.segment(frame).mask)
            publish_until(pub, lambda i: compressed_msg(frame, "jpeg", 5000 + i, "jpeg"), masks)
            assert any(m.header.frame_id == "jpeg" for m in masks.items)
            bad = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 definitely not a jpeg")
            bad.header.frame_id = "corrupt"
            pub.publish(bad)
            deadline = time.monotonic() + WAIT_S
            while node.pipeline.stream.stats.snapshot()["frames_bad"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert node.pipeline.stream.stats.bad_frames["corrupt_compressed"] >= 1
            publish_until(pub, lambda i: compressed_msg(frame, "jpeg", 6000 + i, "after"), masks)
            assert any(m.header.frame_id == "after" for m in masks.items)  # still serving
    finally:
        probe.destroy()
        node.destroy_node()


def test_multi_camera_batches_frames_that_arrive_together(ros_context, seeded_weights, reference):
    node = SegmentationNode(
        "seg_multi",
        context=ros_context,
        parameter_overrides=params(
            seeded_weights,
            input_topics=["front/image", "rear/image"],
            camera_names=["front", "rear"],
            batch_window_ms=500.0,
        ),
    )
    probe = Probe(ros_context, "probe_multi")
    try:
        front = probe.subscribe("/seg_multi/front/mask")
        rear = probe.subscribe("/seg_multi/rear/mask")
        pf = probe.publisher("/front/image")
        pr = probe.publisher("/rear/image")
        with spinning(ros_context, node, probe.node):
            wait_for_subscribers(pf)
            wait_for_subscribers(pr)
            f_frame, r_frame = camera_frame(80, 60, seed=6), camera_frame(96, 72, seed=7)
            for k in range(2):
                n = len(front.items)
                batches = node.pipeline.stream.stats.batches
                pf.publish(image_msg(f_frame, "rgb8", 7000 + k, "front"))
                pr.publish(image_msg(r_frame, "rgb8", 7000 + k, "rear"))
                assert front.wait_count(n + 1) and rear.wait_count(n + 1)
                assert node.pipeline.stream.wait_idle(WAIT_S)
                if k == 1:  # the first pair may straddle discovery; the second is batched
                    assert node.pipeline.stream.stats.batches == batches + 1, "two cameras were not batched"
            f_mask, r_mask = front.items[-1], rear.items[-1]
            assert (f_mask.header.frame_id, f_mask.width, f_mask.height) == ("front", 80, 60)
            assert (r_mask.header.frame_id, r_mask.width, r_mask.height) == ("rear", 96, 72)
            np.testing.assert_array_equal(mask_of(f_mask), reference.segment(f_frame).mask)
            np.testing.assert_array_equal(mask_of(r_mask), reference.segment(r_frame).mask)
    finally:
        probe.destroy()
        node.destroy_node()


def test_two_nodes_in_one_process(ros_context, seeded_weights):
    a = SegmentationNode(
        "seg_a",
        context=ros_context,
        parameter_overrides=params(seeded_weights, input_topics=["/cam_a/image"]),
    )
    b = SegmentationNode(
        "seg_b",
        namespace="robot2",
        context=ros_context,
        parameter_overrides=params(seeded_weights, input_topics=["/cam_b/image"]),
    )
    probe = Probe(ros_context, "probe_two")
    try:
        ma, mb = probe.subscribe("/seg_a/mask"), probe.subscribe("/robot2/seg_b/mask")
        pa, pb = probe.publisher("/cam_a/image"), probe.publisher("/cam_b/image")
        with spinning(ros_context, a, b, probe.node, threads=3):
            wait_for_subscribers(pa)
            wait_for_subscribers(pb)
            frame = camera_frame(80, 60, seed=8)
            publish_until(pa, lambda i: image_msg(frame, "rgb8", 8000 + i, "a"), ma)
            publish_until(pb, lambda i: image_msg(frame, "rgb8", 9000 + i, "b"), mb)
            assert ma.items and mb.items, "both nodes must serve"
            assert ma.items[0].header.frame_id == "a" and mb.items[0].header.frame_id == "b"
            np.testing.assert_array_equal(mask_of(ma.items[0]), mask_of(mb.items[0]))
    finally:
        probe.destroy()
        a.destroy_node()
        b.destroy_node()


def test_python_m_entry_point_with_remapping(ros_context, seeded_weights, tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "node.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bevanet_ros.segmentation_node",
            "--ros-args",
            "-p",
            f"weights:={seeded_weights}",
            "-p",
            "num_threads:=1",
            "-r",
            "image:=/camera/image_raw",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    probe = Probe(ros_context, "probe_cli")
    try:
        masks = probe.subscribe("/segmentation/mask")
        pub = probe.publisher("/camera/image_raw", reliable=False)
        with spinning(ros_context, probe.node):
            frame = camera_frame(80, 60, seed=9)
            publish_until(pub, lambda i: image_msg(frame, "rgb8", 10_000 + i, "cli"), masks, period=0.5)
            assert any(m.header.frame_id == "cli" for m in masks.items), (
                "no mask from the python -m node: " + (tmp_path / "node.log").read_text()[-2000:]
            )
    finally:
        probe.destroy()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
    assert code == 0, (tmp_path / "node.log").read_text()[-2000:]


def test_python_m_bad_parameter_exits_nonzero_with_message(tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bevanet_ros.segmentation_node",
            "--ros-args",
            "-p",
            "weights:=/no/such/file.safetensors",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "/no/such/file.safetensors" in out.stderr + out.stdout
    assert "does not exist" in out.stderr + out.stdout


def test_parameter_file_spec_and_param_describe_agree(ros_context, served):
    """rcl's YAML parser (not PyYAML) reads config/segmentation.yaml into the spec's defaults,
    and the node's describe_parameters service (what `ros2 param describe` calls) reports the
    spec's type, description, constraints, ranges and read-only flag for every parameter."""
    from rcl_interfaces.srv import DescribeParameters
    from rclpy.node import Node

    path = Path(__file__).resolve().parents[1] / "config" / "segmentation.yaml"
    parsed = Node(
        "yaml_check",
        context=ros_context,
        cli_args=["--ros-args", "--params-file", str(path)],
        automatically_declare_parameters_from_overrides=True,
    )
    try:
        names = [p.name for p in PARAMS if p.name != "camera_names"]
        got = {name: parsed.get_parameter(name).value for name in names}
        assert got == {p.name: p.default for p in PARAMS if p.name != "camera_names"}
    finally:
        parsed.destroy_node()

    node, probe = served
    client = probe.node.create_client(DescribeParameters, f"{node.get_fully_qualified_name()}/describe_parameters")
    assert client.wait_for_service(timeout_sec=WAIT_S)
    future = client.call_async(DescribeParameters.Request(names=[p.name for p in PARAMS]))
    deadline = time.monotonic() + WAIT_S
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    described = {d.name: d for d in future.result().descriptors}
    types = {"str": 4, "int": 2, "float": 3, "bool": 1, "str_list": 9}  # ParameterType values
    for spec in PARAMS:
        d = described[spec.name]
        assert (d.type, d.description, d.additional_constraints, d.read_only) == (
            types[spec.type_name],
            spec.description,
            spec.constraints,
            spec.read_only,
        ), spec.name
        if spec.int_range:
            r = d.integer_range[0]
            assert (r.from_value, r.to_value, r.step) == spec.int_range, spec.name
        if spec.float_range:
            r = d.floating_point_range[0]
            assert (r.from_value, r.to_value) == spec.float_range, spec.name
    probe.node.destroy_client(client)


def test_array_to_imgmsg_copies_the_header_and_refuses_a_mismatch():
    from std_msgs.msg import Header

    from bevanet_ros.pipeline import array_to_imgmsg

    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = array_to_imgmsg(mask, "mono8", header)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (3, 4, 4, "mono8")
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    assert bytes(msg.data) == mask.tobytes()
    color = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    rgb = array_to_imgmsg(color, "rgb8")
    assert rgb.step == 12 and bytes(rgb.data) == color.tobytes()
    with pytest.raises(ValueError, match="is not mono8"):
        array_to_imgmsg(color, "mono8")
    with pytest.raises(ValueError, match="float32"):
        array_to_imgmsg(mask.astype(np.float32), "mono8")


def test_openvino_backend_in_the_node(ros_context, seeded_weights):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from bevanet_core.runtime import Segmenter, SegmenterConfig

    node = SegmentationNode(
        "seg_openvino",
        context=ros_context,
        # a size BEVANet's adaptive pooling exports to ONNX at
        parameter_overrides=params(seeded_weights, backend="openvino", input_width=256, input_height=128),
    )
    probe = Probe(ros_context, "probe_openvino")
    try:
        assert node.pipeline.segmenter.backend.name == "openvino"
        assert node.pipeline.diagnostic_status().hardware_id == "openvino:cpu"
        with spinning(ros_context, node, probe.node):
            masks = probe.subscribe("/seg_openvino/mask")
            pub = probe.publisher("image", reliable=True)
            wait_for_subscribers(pub)
            frame = camera_frame(80, 60, seed=5)
            publish_until(pub, lambda i: image_msg(frame, "rgb8", 500 + i, "ov"), masks)
            out = next((m for m in masks.items if m.header.frame_id == "ov"), None)
            assert out is not None, "no mask from the openvino node"
        ref = Segmenter(SegmenterConfig(weights=str(seeded_weights), backend="openvino", input_size=(256, 128)))
        agree = (mask_of(out) == ref.segment(frame, "rgb8").mask).mean()
        assert agree > 0.999
    finally:
        probe.destroy()
        node.destroy_node()
