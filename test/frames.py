"""Camera-like raw frames for tests and benchmarks, built by OpenCV's own conversions (and, for
packed 4:2:2, the BT.601 formulas written out), never by the decoder under test."""

from __future__ import annotations

import cv2
import numpy as np

_OPENCV = {
    "rgb8": None,
    "bgr8": cv2.COLOR_RGB2BGR,
    "rgba8": cv2.COLOR_RGB2RGBA,
    "bgra8": cv2.COLOR_RGB2BGRA,
    "mono8": cv2.COLOR_RGB2GRAY,
}
YUV422 = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
ENCODINGS = tuple(_OPENCV) + YUV422


def rgb_to_raw(rgb: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """HxWx3 RGB -> (bytes, step) of a `sensor_msgs/Image` in `encoding`."""
    if encoding in YUV422:
        out = rgb_to_yuv422(rgb, uyvy=encoding in ("yuv422", "uyvy"))
    else:
        code = _OPENCV[encoding]
        out = rgb if code is None else cv2.cvtColor(rgb, code)
    out = np.ascontiguousarray(out)
    return out.tobytes(), int(out.strides[0])


def rgb_to_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """RGB -> packed 4:2:2, BT.601 limited range; chroma averaged over each pixel pair."""
    if rgb.shape[1] % 2:
        raise ValueError("yuv422 needs an even width")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    out = np.empty(y.shape + (2,), np.float32)
    out[:, :, 1 if uyvy else 0] = y
    chroma = out[:, :, 0 if uyvy else 1]
    chroma[:, 0::2] = (u[:, 0::2] + u[:, 1::2]) / 2.0
    chroma[:, 1::2] = (v[:, 0::2] + v[:, 1::2]) / 2.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
