"""The node's Foxglove live view (parameter foxglove_port): frames in over DDS, a WebSocket
client on localhost receives the colour mask of the node's first camera."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (extra 'foxglove')")
pytest.importorskip("websockets", reason="websockets is not installed (extra 'test')")
pytest.importorskip("google.protobuf", reason="protobuf is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_foxglove import decode_protobuf, receive_one  # noqa: E402
from test_ros_support import (  # noqa: E402
    Probe,
    camera_frame,
    image_msg,
    params,
    ros_context,
    seeded_weights,
    spinning,
)

from bevanet_ros.segmentation_node import SegmentationNode  # noqa: E402

__all__ = ["ros_context", "seeded_weights"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets in LISTEN state on `port` (from /proc/net/tcp*)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


def test_node_streams_its_colour_mask_to_foxglove(ros_context, seeded_weights):
    port = free_port()
    node = SegmentationNode(context=ros_context, parameter_overrides=params(seeded_weights, foxglove_port=port))
    # the default foxglove_address keeps the camera stream on this computer
    assert listening_addresses(port) == {"127.0.0.1"}
    probe = Probe(ros_context, "foxglove_probe")
    pub = probe.publisher("/image")
    stop = threading.Event()
    frame = camera_frame(80, 60, seed=3)

    def feed() -> None:
        while not stop.is_set():
            pub.publish(image_msg(frame, "rgb8", frame_id="fox"))
            stop.wait(0.2)

    try:
        with spinning(ros_context, node, probe.node):
            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            channel, payload = asyncio.run(receive_one(f"ws://127.0.0.1:{port}", "/segmentation/color_mask", 120))
            stop.set()
            feeder.join(5)
        image = decode_protobuf(channel["schema"], channel["schemaName"], payload)
        assert (image.encoding, image.width, image.height, image.frame_id) == ("rgb8", 80, 60, "fox")
        pixels = np.frombuffer(image.data, np.uint8).reshape(60, 80, 3)
        expect = node.pipeline.segmenter.colorize(node.pipeline.segmenter.segment(frame).mask)
        assert np.array_equal(pixels, expect)
    finally:
        stop.set()
        probe.destroy()
        node.destroy_node()


def test_node_listens_on_the_foxglove_address_it_is_given(ros_context, seeded_weights):
    port = free_port()
    overrides = params(seeded_weights, foxglove_port=port, foxglove_address="0.0.0.0", warmup=False)
    node = SegmentationNode(context=ros_context, parameter_overrides=overrides)
    try:
        assert listening_addresses(port) == {"0.0.0.0"}
    finally:
        node.destroy_node()
    assert listening_addresses(port) == set()
