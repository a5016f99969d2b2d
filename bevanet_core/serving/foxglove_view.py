"""A live view in Foxglove (or Lichtblick) without ROS or RViz: the Foxglove WebSocket protocol,
served from this process by the `foxglove-sdk` package (`pip install 'bevanet_ros[foxglove]'`).

    view = FoxgloveView(port=8765)          # ws://127.0.0.1:8765: "Open connection" in Foxglove
    view.publish(stamp_ns, rgb, color, overlay, latency_ms)
    view.close()

Channels (Foxglove's own schemas, so the Image and Plot panels show them as they are):
  /camera/image               foxglove.RawImage rgb8: the frame that was segmented
  /segmentation/color_mask    foxglove.RawImage rgb8: the class colours (lossless)
  /segmentation/overlay       foxglove.CompressedImage jpeg: colour mask blended on the frame
  /segmentation/latency       JSON {"latency_ms": ...}: plot `/segmentation/latency.latency_ms`
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import cv2
import numpy as np

from .params import ParameterError

DEFAULT_PORT = 8765
CAMERA_TOPIC = "/camera/image"
COLOR_TOPIC = "/segmentation/color_mask"
OVERLAY_TOPIC = "/segmentation/overlay"
LATENCY_TOPIC = "/segmentation/latency"
_LATENCY_SCHEMA = {
    "type": "object",
    "properties": {
        "timestamp": {
            "type": "object",
            "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}},
        },
        "latency_ms": {"type": "number"},
        "frame": {"type": "integer"},
    },
}


class FoxgloveView:
    """A Foxglove WebSocket server with the segmentation channels. `port=0` picks a free port
    (read it back from `.port`). Raises ImportError without foxglove-sdk, OSError when the port
    cannot be bound."""

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1", frame_id: str = "camera"):
        import foxglove
        from foxglove.channels import CompressedImageChannel, RawImageChannel
        from foxglove.websocket import ServerListener

        viewer = threading.Event()

        class _Listener(ServerListener):
            def on_subscribe(self, client: Any, channel: Any) -> None:
                viewer.set()

        self._viewer = viewer
        self.frame_id = frame_id
        self.frames = 0
        self._context = foxglove.Context()
        self.server = foxglove.start_server(
            name="bevanet",
            host=host,
            port=int(port),
            context=self._context,
            server_listener=_Listener(),
        )
        self.host = host
        self.port = int(self.server.port)
        ctx = self._context
        self._camera = RawImageChannel(CAMERA_TOPIC, context=ctx)
        self._color = RawImageChannel(COLOR_TOPIC, context=ctx)
        self._overlay = CompressedImageChannel(OVERLAY_TOPIC, context=ctx)
        self._latency = foxglove.Channel(
            LATENCY_TOPIC,
            message_encoding="json",
            schema=foxglove.Schema(
                name="bevanet.Latency",
                encoding="jsonschema",
                data=json.dumps(_LATENCY_SCHEMA).encode(),
            ),
            context=ctx,
        )

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def wait_for_viewer(self, timeout_s: float) -> bool:
        """Blocks until a client subscribes to any channel (True) or `timeout_s` passes."""
        return self._viewer.wait(timeout_s)

    def publish(
        self,
        stamp_ns: int,
        rgb: np.ndarray | None,
        color: np.ndarray | None,
        overlay: np.ndarray | None,
        latency_ms: float | None,
        frame_id: str | None = None,
    ) -> None:
        """Sends one frame's images and latency (each part is skipped when None); `frame_id`
        defaults to the view's."""
        from foxglove.messages import CompressedImage, RawImage, Timestamp

        sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
        ts = Timestamp(sec=sec, nsec=nsec)
        frame_id = self.frame_id if frame_id is None else frame_id

        def raw(image: np.ndarray) -> Any:
            image = np.ascontiguousarray(image, dtype=np.uint8)
            h, w = image.shape[:2]
            return RawImage(
                timestamp=ts,
                frame_id=frame_id,
                width=w,
                height=h,
                encoding="rgb8",
                step=w * 3,
                data=image.tobytes(),
            )

        if rgb is not None:
            self._camera.log(raw(rgb), log_time=int(stamp_ns))
        if color is not None:
            self._color.log(raw(color), log_time=int(stamp_ns))
        if overlay is not None:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                self._overlay.log(
                    CompressedImage(timestamp=ts, frame_id=frame_id, data=buf.tobytes(), format="jpeg"),
                    log_time=int(stamp_ns),
                )
        if latency_ms is not None:
            self._latency.log(
                {
                    "timestamp": {"sec": sec, "nsec": nsec},
                    "latency_ms": float(latency_ms),
                    "frame": self.frames,
                },
                log_time=int(stamp_ns),
            )
        self.frames += 1

    def close(self) -> None:
        self.server.stop()


class ReplayBuffer:
    """The frames sent to a view, kept to send them again and again (`bevanet-demo --foxglove
    --loop`): a viewer that connects after the first pass still sees the drive. Frames beyond
    `max_bytes` of images are not kept (`.full` says so); the replay then loops over the first."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.full = False
        self.frames: list[tuple[int, np.ndarray | None, np.ndarray | None, np.ndarray | None, float | None]] = []

    def add(self, stamp_ns: int, rgb, color, overlay, latency_ms: float | None) -> bool:
        """Keeps one frame (copies of its images); False when the buffer is full."""
        images = [None if a is None else np.array(a, dtype=np.uint8, copy=True) for a in (rgb, color, overlay)]
        size = sum(a.nbytes for a in images if a is not None)
        if self.full or self.nbytes + size > self.max_bytes:
            self.full = True
            return False
        self.nbytes += size
        self.frames.append((int(stamp_ns), *images, latency_ms))
        return True

    def period_ns(self) -> list[int]:
        """The time from each frame to the next, as recorded (the last one repeats the median;
        gaps are kept within 1 ms and 1 s, 100 ms where there is only one frame)."""
        stamps = [f[0] for f in self.frames]
        gaps = [min(max(b - a, 1_000_000), 1_000_000_000) for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
        last = sorted(gaps)[len(gaps) // 2] if gaps else 100_000_000
        return gaps + [last]

    def replay(self, view: Any, passes: int | None = None, sleep=time.sleep) -> int:
        """Sends the kept frames to `view` at their recorded pace, `passes` times (None: until
        KeyboardInterrupt, which propagates); returns the passes completed. Each pass's stamps
        continue after the one before, so the viewer's clock never runs backwards."""
        if not self.frames:
            raise ValueError("no frames to replay")
        periods = self.period_ns()
        span = self.frames[-1][0] - self.frames[0][0] + periods[-1]
        done = 0
        while passes is None or done < passes:
            shift = (done + 1) * span
            for (stamp, rgb, color, overlay, latency), period in zip(self.frames, periods, strict=True):
                view.publish(stamp + shift, rgb, color, overlay, latency)
                sleep(period / 1e9)
            done += 1
        return done


def start_foxglove_view(port: int, address: str) -> Any:
    """The Foxglove live view on `address`:`port`; ParameterError when it cannot be."""
    try:
        return FoxgloveView(port=port, host=address)
    except ImportError:
        raise ParameterError(
            "parameter 'foxglove_port' needs foxglove-sdk: pip install foxglove-sdk (or the package's extra 'foxglove')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. the port is taken
        raise ParameterError(f"parameter 'foxglove_port': cannot serve on {address} port {port}: {exc}") from None
