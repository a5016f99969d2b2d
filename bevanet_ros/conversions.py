"""`sensor_msgs/Image` and `CompressedImage` <-> numpy, with checks that name the problem.

Decoding works on any object with the message's fields (duck typing), so this module imports no
ROS package at load time and is tested without ROS. `cv_bridge` is used for raw images where it
is installed (after the same checks, so errors read the same); otherwise the project's own numpy
conversion runs. Building output messages imports `sensor_msgs` lazily.

Every decoder returns a C-contiguous HxWx3 uint8 RGB array: the runtime, the overlay and the
colour mask all work in RGB, and a single layout keeps batching across cameras simple.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import cv2
import numpy as np
from PIL import Image as PILImage

try:  # only where ROS provides it; never required
    from cv_bridge import CvBridge  # type: ignore

    _BRIDGE: Any | None = CvBridge()
except Exception:  # noqa: BLE001 - any import problem means "not available"
    _BRIDGE = None

# encoding -> (bytes per pixel, cv2 conversion to RGB or None for "already RGB")
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV (sensor_msgs/image_encodings.hpp)
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2RGB_YUY2),
}
# where cv_bridge's answer is the same as ours; YUV names differ between ROS releases
_BRIDGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
MAX_PIXELS = 64 * 1024 * 1024  # 64 Mpx: far above any camera, far below an allocation bomb


class ImageDecodeError(ValueError):
    """A frame that cannot be turned into an image. `kind` groups errors for throttled logs."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def uses_cv_bridge() -> bool:
    """True when raw images are decoded by cv_bridge (installed), False for the numpy path."""
    return _BRIDGE is not None


def _as_bytes_view(data: Any) -> np.ndarray:
    """Message `data` (array.array, bytes, list of ints, numpy) -> 1-D uint8 view without copy
    where the buffer protocol allows it."""
    if isinstance(data, np.ndarray):
        return (
            data.reshape(-1).view(np.uint8)
            if data.dtype == np.uint8
            else data.astype(np.uint8).reshape(-1)
        )
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageDecodeError(
                "bad_data", f"image data is not a byte sequence ({exc})"
            ) from None


def check_raw_layout(encoding: str, height: int, width: int, step: int, data_len: int) -> int:
    """Checks a raw image's geometry; returns bytes per pixel. Raises ImageDecodeError naming the
    problem (unknown encoding, zero size, step too small, data length not step*height)."""
    enc = encoding if isinstance(encoding, str) else ""
    if enc not in RAW_ENCODINGS:  # exact names, as in sensor_msgs/image_encodings.hpp
        raise ImageDecodeError(
            "unknown_encoding",
            f"unsupported image encoding {encoding!r}; supported: {', '.join(RAW_ENCODINGS)}",
        )
    bpp = RAW_ENCODINGS[enc][0]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(
            "zero_size", f"image has zero size ({width}x{height}, encoding {enc})"
        )
    if height * width > MAX_PIXELS:
        raise ImageDecodeError("too_large", f"image {width}x{height} exceeds {MAX_PIXELS} pixels")
    if bpp == 2 and width % 2:
        raise ImageDecodeError(
            "odd_width", f"{enc} packs pixel pairs, so width must be even, got {width}"
        )
    if step < width * bpp:
        raise ImageDecodeError(
            "step_mismatch",
            f"step {step} is smaller than width*bytes_per_pixel = {width}*{bpp} = "
            f"{width * bpp} ({enc})",
        )
    if data_len != step * height:
        raise ImageDecodeError(
            "data_length",
            f"data has {data_len} bytes but step*height = {step}*{height} = {step * height} "
            f"({enc} {width}x{height})",
        )
    return bpp


def raw_to_rgb(encoding: str, height: int, width: int, step: int, data: Any) -> np.ndarray:
    """Raw image fields -> HxWx3 uint8 RGB (contiguous). Raises ImageDecodeError."""
    buf = _as_bytes_view(data)
    bpp = check_raw_layout(encoding, int(height), int(width), int(step), buf.size)
    enc = encoding
    rows = buf.reshape(int(height), int(step))[:, : int(width) * bpp]
    pixels = (
        rows.reshape(int(height), int(width), bpp)
        if bpp > 1
        else rows.reshape(int(height), int(width))
    )
    code = RAW_ENCODINGS[enc][1]
    if code is None:
        return np.ascontiguousarray(pixels)
    if bpp == 2:  # packed YUV: cv2 wants HxWx2
        pixels = np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, code)


def imgmsg_to_rgb(msg: Any) -> np.ndarray:
    """`sensor_msgs/Image` (or anything with its fields) -> HxWx3 uint8 RGB."""
    try:
        encoding, height, width, step, data = (
            msg.encoding,
            msg.height,
            msg.width,
            msg.step,
            msg.data,
        )
    except AttributeError as exc:
        raise ImageDecodeError("bad_message", f"not an Image message: {exc}") from None
    if _BRIDGE is not None and encoding in _BRIDGE_ENCODINGS:
        check_raw_layout(encoding, int(height), int(width), int(step), len(data))
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own CvBridgeError
            raise ImageDecodeError(
                "cv_bridge", f"cv_bridge could not convert the image: {exc}"
            ) from None
    return raw_to_rgb(encoding, height, width, step, data)


def compressed_to_rgb(fmt: str, data: Any) -> np.ndarray:
    """Compressed bytes (jpeg/png, any format string) -> HxWx3 uint8 RGB. Raises ImageDecodeError.

    Pillow decodes: it reports truncation and corruption as exceptions, where libjpeg/libpng
    under OpenCV print to stderr for every bad frame, which would defeat throttled logging.
    """
    buf = _as_bytes_view(data)
    if buf.size == 0:
        raise ImageDecodeError("zero_size", f"compressed image (format {fmt!r}) has no data")
    try:
        with PILImage.open(io.BytesIO(buf.tobytes())) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageDecodeError(
                    "too_large", f"compressed image {img.width}x{img.height} is too large"
                )
            rgb = np.asarray(img.convert("RGB"))
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, bomb errors...
        reason = str(exc).split(" <_io.")[0] or type(exc).__name__  # drop PIL's BytesIO repr
        raise ImageDecodeError(
            "corrupt_compressed",
            f"could not decode compressed image (format {fmt!r}, {buf.size} bytes): {reason}",
        ) from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageDecodeError("zero_size", f"compressed image decoded to shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """`sensor_msgs/CompressedImage` (or anything with its fields) -> HxWx3 uint8 RGB."""
    try:
        fmt, data = msg.format, msg.data
    except AttributeError as exc:
        raise ImageDecodeError("bad_message", f"not a CompressedImage message: {exc}") from None
    return compressed_to_rgb(fmt, data)


def array_to_imgmsg(array: np.ndarray, encoding: str, header: Any = None) -> Any:
    """HxW (mono8) or HxWx3 (rgb8) uint8 array -> `sensor_msgs/Image` with `header` copied."""
    from sensor_msgs.msg import Image  # lazy: keeps this module importable without ROS

    if array.dtype != np.uint8:
        raise ValueError(f"array_to_imgmsg needs uint8, got {array.dtype}")
    channels = 1 if array.ndim == 2 else array.shape[2]
    expected = {"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding)
    if expected is None or expected != channels:
        raise ValueError(f"array of shape {array.shape} does not match encoding {encoding!r}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 1 if sys.byteorder == "big" else 0
    msg.step = int(array.shape[1] * channels)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def rgb_to_raw(rgb: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """HxWx3 RGB -> (bytes, step) in `encoding`; the inverse of `raw_to_rgb` (for tests, tools and
    benchmarks that publish camera-like frames)."""
    enc = encoding
    if enc not in RAW_ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    if enc == "rgb8":
        out = rgb
    elif enc == "bgr8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif enc == "rgba8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif enc == "bgra8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif enc == "mono8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        out = _rgb_to_yuv422(rgb, uyvy=enc in ("yuv422", "uyvy"))
    out = np.ascontiguousarray(out)
    return out.tobytes(), int(out.strides[0])


def _rgb_to_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """RGB -> packed 4:2:2, BT.601 limited range (what cv2's YUV2RGB_UYVY/YUY2 invert)."""
    if rgb.shape[1] % 2:
        raise ValueError("yuv422 needs an even width")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    u2 = (u[:, 0::2] + u[:, 1::2]) / 2.0
    v2 = (v[:, 0::2] + v[:, 1::2]) / 2.0
    h, w = y.shape
    out = np.empty((h, w, 2), np.float32)
    out[:, :, 1 if uyvy else 0] = y
    chroma = out[:, :, 0 if uyvy else 1]
    chroma[:, 0::2] = u2
    chroma[:, 1::2] = v2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
