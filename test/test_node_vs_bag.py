"""A bag evaluated offline and the same recorded messages sent through the running node give
identical masks, byte for byte: raw rgb8, the raw encodings that need a colour conversion
(Bayer, packed 4:2:2) and JPEG frames."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from test_ros_support import (  # noqa: E402
    WAIT_S,
    Probe,
    params,
    ros_context,
    spinning,
    stamp_ns,
    wait_for_subscribers,
)

pytest.importorskip("rosbags", reason="the rosbags library is not installed")

from frames import rgb_to_raw  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from bevanet_core.bags import (
    evaluate,  # noqa: E402
    messages,  # noqa: E402
)
from bevanet_core.bags.reader import BagReader  # noqa: E402
from bevanet_core.bags.writer import (  # noqa: E402
    BagWriter,
    CameraBagOptions,
    Frame,
    write_camera_bag,
)
from bevanet_core.checkpoint import DEFAULT_WEIGHTS  # noqa: E402
from bevanet_core.runtime import Segmenter, SegmenterConfig  # noqa: E402
from bevanet_core.serving import decode  # noqa: E402
from bevanet_ros.segmentation_node import SegmentationNode  # noqa: E402

__all__ = ["ros_context"]
N_FRAMES = 4
BACKEND = "torch"
SIZE = (96, 72)  # (W, H) of the frames and of the network input: small, fast on one core
SAMPLE = Path(__file__).resolve().parents[1] / "bags" / "solid_white_right"


@pytest.fixture(scope="module")
def drive() -> list[np.ndarray]:
    """Real highway frames (the shipped sample bag), shrunk: the shipped model segments them
    into several classes, so a decoder or pipeline difference changes pixels of the mask (a
    random model would paint every frame one class)."""
    import cv2

    with BagReader(SAMPLE) as bag:
        raws = list(itertools.islice(bag.messages(["/camera/image_raw/compressed"]), N_FRAMES))
        rgbs = [decode.message_to_rgb(bag.deserialize(r)) for r in raws]
    return [cv2.resize(rgb, SIZE, interpolation=cv2.INTER_AREA) for rgb in rgbs]


def bag_masks(path) -> dict[int, np.ndarray]:
    with BagReader(path) as bag:
        return {
            stamp_ns(msg.header): decode.image_to_array(msg)
            for msg in (bag.deserialize(r) for r in bag.messages([evaluate.MASK_TOPIC]))
        }


def recorded_frames(path, topic):
    """(header stamp, CDR bytes) of every camera message, as recorded."""
    with BagReader(path) as bag:
        return [(stamp_ns(bag.deserialize(raw).header), bag.to_cdr(raw)) for raw in bag.messages([topic])]


def bayer_rggb(rgb: np.ndarray) -> np.ndarray:
    """What an RGGB sensor records of `rgb`: one colour sample per pixel."""
    mosaic = rgb[:, :, 1].copy()
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return mosaic


def write_raw_bag(path, frames: list[np.ndarray], encoding: str) -> None:
    topic = "/camera/image_raw"
    with BagWriter(path) as bag:
        bag.add_topic(topic, messages.IMAGE)
        for i, rgb in enumerate(frames):
            stamp = 1_700_000_000_000_000_000 + i * 200_000_000
            if encoding == "bayer_rggb8":
                pixels = bayer_rggb(rgb)
            else:
                data, step = rgb_to_raw(rgb, encoding)
                pixels = np.frombuffer(data, np.uint8).reshape(rgb.shape[0], step // 2, 2)
            bag.write(topic, stamp, messages.image_msg(pixels, encoding, stamp, "camera"))


@pytest.mark.parametrize("encoding", ["rgb8", "bayer_rggb8", "yuv422", "jpeg"])
def test_node_and_bag_evaluator_give_identical_masks(ros_context, drive, tmp_path, encoding):
    compressed = encoding == "jpeg"
    images = drive
    bag = tmp_path / "drive"
    if encoding in ("rgb8", "jpeg"):
        frames = [Frame(image, None) for image in images]
        write_camera_bag(frames, bag, CameraBagOptions(compressed=compressed, jpeg_quality=70, rate=5.0))
    else:
        write_raw_bag(bag, images, encoding)
    # Both sides name the backend and the threads: 'auto' times the installed backends and
    # may pick onnxruntime on one side and torch on the other, whose floats differ in the
    # last bits and flip a near-tied pixel. This test is about the pipelines around them.
    seg = Segmenter(SegmenterConfig(weights=str(DEFAULT_WEIGHTS), input_size=SIZE, backend=BACKEND, num_threads=1))
    try:
        result = evaluate.evaluate_bag(
            bag,
            evaluate.RuntimeProcessor(seg),
            evaluate.EvalOptions(out_bag=tmp_path / "offline", copy_inputs=False),
        )
    finally:
        seg.close()
    assert result.frames == N_FRAMES and not result.errors
    offline = bag_masks(tmp_path / "offline")
    assert all(len(np.unique(mask)) >= 3 for mask in offline.values())  # the test has teeth
    if compressed:  # the JPEG really is lossy here: the test would notice a decoder mismatch
        first = recorded_frames(bag, result.image_topic)[0][1]
        assert len(first) < 96 * 72 * 3 // 4

    topic = "/parity/image_raw"
    node = SegmentationNode(
        f"parity_{encoding}",
        context=ros_context,
        parameter_overrides=params(
            DEFAULT_WEIGHTS,
            backend=BACKEND,
            num_threads=1,
            input_width=SIZE[0],
            input_height=SIZE[1],
            input_topics=[topic],
            input_transport="compressed" if compressed else "raw",
            input_qos="reliable",
            input_qos_depth=N_FRAMES,
        ),
    )
    probe = Probe(ros_context, "parity_probe")
    masks = probe.subscribe(f"/{node.get_name()}/mask", depth=N_FRAMES)
    pub = probe.publisher(
        topic + "/compressed" if compressed else topic,
        CompressedImage if compressed else Image,
    )
    try:
        with spinning(ros_context, node, probe.node):
            wait_for_subscribers(pub)
            for i, (_stamp, cdr) in enumerate(recorded_frames(bag, result.image_topic)):
                pub.publish(cdr)  # the recorded bytes, exactly as a bag player sends them
                assert masks.wait_count(i + 1, WAIT_S), f"no mask for frame {i}"
                time.sleep(0.01)
        online = {stamp_ns(m.header): m for m in masks.items}
    finally:
        probe.destroy()
        node.destroy_node()
    assert sorted(online) == sorted(offline)
    for stamp, msg in online.items():
        got = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width]
        assert got.shape == (SIZE[1], SIZE[0])
        assert got.tobytes() == offline[stamp].tobytes(), f"masks differ at stamp {stamp}"
