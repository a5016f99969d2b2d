"""The Foxglove live view for real: `bevanet-demo --foxglove` serves the Foxglove WebSocket
protocol (foxglove-sdk, subprotocol `foxglove.sdk.v1` only), and a WebSocket client on localhost,
speaking that protocol as the Foxglove app does, subscribes and receives a colour-mask image of
the replayed drive; with --loop it keeps serving after the replay, until Ctrl-C."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
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
# what a current Foxglove app offers: both names; foxglove-sdk accepts only the first (the older
# foxglove.websocket.v1 alone is refused, see test_the_view_speaks_only_foxglove_sdk_v1)
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


def test_the_view_speaks_only_foxglove_sdk_v1():
    """What docs/ros-node.md tells users: viewers must offer foxglove.sdk.v1; a client that
    offers only the older foxglove.websocket.v1 (Lichtblick 1.21 and older, old Foxglove
    Studio releases, foxglove_bridge 0.x clients) is refused at the handshake."""
    from bevanet_core.serving.foxglove_view import FoxgloveView

    view = FoxgloveView(port=0)

    async def handshake(protocols: list[str]) -> str | None:
        async with websockets.connect(view.url, subprotocols=protocols) as ws:
            return ws.subprotocol

    try:
        assert asyncio.run(handshake(["foxglove.sdk.v1"])) == "foxglove.sdk.v1"
        assert asyncio.run(handshake(SUBPROTOCOLS)) == "foxglove.sdk.v1"
        with pytest.raises(websockets.exceptions.InvalidStatus, match="400"):
            asyncio.run(handshake(["foxglove.websocket.v1"]))
    finally:
        view.close()


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, object]] = []

    def publish(self, stamp_ns, rgb, color, overlay, latency_ms) -> None:
        self.sent.append((stamp_ns, latency_ms))


def test_replay_buffer_sends_the_frames_again_at_their_pace_with_stamps_that_go_on():
    from bevanet_core.serving.foxglove_view import ReplayBuffer

    frames = ReplayBuffer()
    image = np.zeros((4, 6, 3), np.uint8)
    for i, stamp in enumerate((1_000_000_000, 1_100_000_000, 1_300_000_000)):
        assert frames.add(stamp, image, image, None, float(i))
    image[:] = 7  # the buffer keeps copies
    assert all(int(f[1].max()) == 0 for f in frames.frames)
    assert frames.period_ns() == [100_000_000, 200_000_000, 200_000_000]
    view, slept = _Recorder(), []
    assert frames.replay(view, passes=2, sleep=slept.append) == 2
    stamps = [s for s, _ in view.sent]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6  # the viewer's clock never runs backwards
    assert stamps[3] - stamps[0] == 500_000_000  # one pass: the recording and one period
    assert [lat for _, lat in view.sent] == [0.0, 1.0, 2.0] * 2
    assert slept == [0.1, 0.2, 0.2] * 2
    small = ReplayBuffer(max_bytes=2 * image.nbytes)
    assert small.add(0, image, None, None, None) and small.add(1, image, None, None, None)
    assert not small.add(2, image, None, None, None) and small.full and len(small.frames) == 2
    with pytest.raises(ValueError, match="no frames"):
        ReplayBuffer().replay(view, passes=1)


def test_demo_loop_keeps_serving_after_the_replay_until_ctrl_c(tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "import sys; from bevanet_ros.tools import demo_main; sys.exit(demo_main())",
        "--foxglove",
        "0",
        "--foxglove-wait",
        "0",
        "--loop",
        "--max-frames",
        "2",
        "--no-video",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "demo"),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"Foxglove live view on (ws://127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else url
            if "again and again; Ctrl-C stops" in line:
                break
        assert url and "again and again" in lines[-1], "".join(lines)
        # the first pass is over and its outputs are written; a viewer that connects now still gets frames
        assert (tmp_path / "demo" / "report.json").is_file()
        channel, payload = asyncio.run(receive_one(url, "/segmentation/color_mask", 60))
        image = decode_protobuf(channel["schema"], channel["schemaName"], payload)
        assert (image.width, image.height) == (480, 270)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        lines.append(out)
        assert proc.returncode == 0, "".join(lines)
        assert "stopped (Ctrl-C)" in out and "Traceback" not in out, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_loop_without_foxglove_is_refused(tmp_path):
    from bevanet_core.cli import demo

    with pytest.raises(SystemExit) as exit_:
        demo.main(["--loop", "--out", str(tmp_path / "demo")])
    assert exit_.value.code == 2
