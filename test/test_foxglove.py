"""The Foxglove live view for real: `bevanet-demo --foxglove` serves the Foxglove WebSocket
protocol (foxglove-sdk), and a WebSocket client on localhost, speaking that protocol as the
Foxglove app does, subscribes and receives a colour-mask image of the replayed drive."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (extra 'foxglove')")
websockets = pytest.importorskip("websockets", reason="websockets is not installed (extra 'test')")
pytest.importorskip("google.protobuf", reason="protobuf is not installed")

REPO = Path(__file__).resolve().parents[1]
# the protocol names foxglove-sdk answers to: its own, and the older one of foxglove_bridge
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


def decode_protobuf(schema_b64: str, schema_name: str, payload: bytes):
    """Decodes a message with the FileDescriptorSet the server advertised for its channel."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(schema_b64))
    pool = descriptor_pool.DescriptorPool()
    for proto in fds.file:
        pool.Add(proto)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))
    return cls.FromString(payload)


async def receive_one(url: str, topic: str, timeout_s: float):
    """Connects, subscribes to `topic`, returns (channel, first message payload)."""
    async with websockets.connect(url, subprotocols=SUBPROTOCOLS, max_size=None) as ws:
        deadline = time.monotonic() + timeout_s
        channel = None
        while time.monotonic() < deadline:
            frame = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg.get("op") == "advertise" and channel is None:
                    for ch in msg["channels"]:
                        if ch["topic"] == topic:
                            channel = ch
                            await ws.send(
                                json.dumps(
                                    {
                                        "op": "subscribe",
                                        "subscriptions": [{"id": 7, "channelId": ch["id"]}],
                                    }
                                )
                            )
                continue
            opcode, sub_id, _log_time = struct.unpack_from("<BIQ", frame)
            if opcode == 0x01 and sub_id == 7:
                return channel, bytes(frame[13:])
        raise AssertionError(f"no message on {topic} within {timeout_s} s")


def test_demo_foxglove_streams_a_colour_mask_to_a_websocket_client(tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "import sys; from bevanet_ros.tools import demo_main; sys.exit(demo_main())",
        "--foxglove",
        "0",
        "--foxglove-wait",
        "120",
        "--max-frames",
        "3",
        "--no-video",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "demo"),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"Foxglove live view on (ws://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
        assert url, "".join(lines)
        channel, payload = asyncio.run(receive_one(url, "/segmentation/color_mask", 180))
        assert channel["encoding"] == "protobuf" and channel["schemaName"] == "foxglove.RawImage"
        image = decode_protobuf(channel["schema"], channel["schemaName"], payload)
        # the sample bag's frames are 480x270
        assert (image.encoding, image.width, image.height) == ("rgb8", 480, 270)
        pixels = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3)
        from bevanet_core.data.classes import CAMVID_PALETTE

        palette = {tuple(c) for c in CAMVID_PALETTE} | {(0, 0, 0)}
        colours = {tuple(c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}
        assert colours <= palette and len(colours) >= 2, colours
        out, _ = proc.communicate(timeout=300)
        lines.append(out)
        assert proc.returncode == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
