"""Camera messages -> HxWx3 uint8 RGB: the one decoder of the node, the bag tools and the demo.

Duck-typed on the fields of `sensor_msgs/Image` (encoding, height, width, step, is_bigendian,
data) and `sensor_msgs/CompressedImage` (format, data), so rclpy messages and the dataclasses
of a `rosbags` typestore go through the same code and give the same pixels. Every problem is an
`ImageDecodeError` whose `kind` groups it for counting and throttled logs.

Raw encodings are the names of `sensor_msgs/image_encodings.hpp`, matched exactly. The 8-bit
RGB-family orders come from the runtime's own table (`runtime.encodings.ENCODINGS`); 16-bit data
keeps its most significant byte. Compressed frames are decoded by Pillow, which reports
truncation and corruption as exceptions (libjpeg under OpenCV prints to stderr for every bad
frame instead).

Every message passes the input policy (`imaging.policy`: the pixel cap, checked on the raw
fields or the PNG/JPEG header before any allocation), the same one that image files meet.
"""

from __future__ import annotations

import io
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image as PILImage

from ..imaging.encodings import ENCODINGS
from ..imaging.policy import (  # noqa: F401 - re-exported: the decoder's public names
    MAX_PIXELS,
    MAX_PIXELS_ENV,
    ImageDecodeError,
    check_pixels,
    error_reason,
    header_size,
    image_file_size,
    max_pixels,
    open_header,
    parse_max_pixels,
    read_image_file,
    set_max_pixels,
)


class RawEncoding(NamedTuple):
    dtype: type  # np.uint8 or np.uint16
    channels: int  # values per pixel in the buffer (2 for packed 4:2:2)
    order: tuple[int, ...] | None  # channels giving R, G, B; None: replicate the one channel
    cv2_code: int | None  # a colour conversion done by OpenCV instead (Bayer, YUV)


def _plain(name: str, dtype: type = np.uint8) -> RawEncoding:
    channels, order = ENCODINGS[name]
    return RawEncoding(dtype, channels, order, None)


RAW_ENCODINGS: dict[str, RawEncoding] = {
    **{name: _plain(name) for name in ENCODINGS},  # rgb8 bgr8 mono8 rgba8 bgra8
    "8UC1": _plain("mono8"),
    "8UC3": _plain("bgr8"),  # OpenCV's convention for untyped 3-channel data
    "8UC4": _plain("bgra8"),
    "rgb16": _plain("rgb8", np.uint16),
    "bgr16": _plain("bgr8", np.uint16),
    "rgba16": _plain("rgba8", np.uint16),
    "bgra16": _plain("bgra8", np.uint16),
    "mono16": _plain("mono8", np.uint16),
    "16UC1": _plain("mono8", np.uint16),
    "bayer_rggb8": RawEncoding(np.uint8, 1, None, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": RawEncoding(np.uint8, 1, None, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": RawEncoding(np.uint8, 1, None, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": RawEncoding(np.uint8, 1, None, cv2.COLOR_BayerGRBG2RGB),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV
    "yuv422": RawEncoding(np.uint8, 2, None, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": RawEncoding(np.uint8, 2, None, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": RawEncoding(np.uint8, 2, None, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": RawEncoding(np.uint8, 2, None, cv2.COLOR_YUV2RGB_YUY2),
}
LABEL_ENCODINGS = ("mono8", "8UC1")


def _as_bytes(data: Any) -> np.ndarray:
    """Message `data` (bytes, array.array, list of ints, numpy) -> 1-D uint8 array, without a
    copy where the buffer protocol allows it."""
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        try:
            values = np.asarray(data)
            if values.dtype.kind not in "iub" or values.size and (values.min() < 0 or values.max() > 255):
                raise ValueError("values outside 0..255")
            return values.astype(np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageDecodeError("bad_data", f"image data is not a byte sequence ({exc})") from None


def check_raw_layout(encoding: Any, height: int, width: int, step: int, data_len: int) -> int:
    """Checks a raw image's geometry; returns bytes per row of pixels. Raises ImageDecodeError
    naming the problem (unknown encoding, zero size, step too small, data length).

    The data must be step*height bytes, or one row's padding short (some drivers leave it off
    the last row).
    """
    spec = RAW_ENCODINGS.get(encoding) if isinstance(encoding, str) else None
    if spec is None:
        raise ImageDecodeError(
            "unknown_encoding",
            f"unsupported image encoding {encoding!r}; supported: {', '.join(RAW_ENCODINGS)}",
        )
    if height <= 0 or width <= 0:
        raise ImageDecodeError("zero_size", f"image has zero size ({width}x{height}, encoding {encoding})")
    check_pixels(width, height, f"image ({encoding})")
    if spec.channels == 2 and width % 2:
        raise ImageDecodeError("odd_width", f"{encoding} packs pixel pairs, so width must be even, got {width}")
    row = width * spec.channels * np.dtype(spec.dtype).itemsize
    if step < row:
        raise ImageDecodeError(
            "step_mismatch",
            f"step {step} is smaller than one row of pixels: {width} px * {row // width} bytes = {row} ({encoding})",
        )
    if step * height > max_pixels() * 8:  # 8 bytes: the widest pixel (rgba16)
        raise ImageDecodeError(
            "too_large",
            f"step*height = {step}*{height} bytes is more than any image under the pixel cap "
            f"({max_pixels()} pixels) can need ({encoding} {width}x{height})",
        )
    if data_len not in (step * height, step * (height - 1) + row):
        raise ImageDecodeError(
            "data_length",
            f"data has {data_len} bytes but step*height = {step}*{height} = {step * height} "
            f"({encoding} {width}x{height})",
        )
    return row


def image_to_array(msg: Any) -> np.ndarray:
    """The pixels of an Image in its own layout: HxW or HxWxC, uint8 or native uint16."""
    try:
        encoding, height, width, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
        data, big_endian = msg.data, bool(getattr(msg, "is_bigendian", 0))
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageDecodeError("bad_message", f"not an Image message: {exc}") from None
    buf = _as_bytes(data)
    row = check_raw_layout(encoding, height, width, step, buf.size)
    if buf.size < step * height:  # last row without its padding
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    rows = np.ascontiguousarray(buf.reshape(height, step)[:, :row])
    spec = RAW_ENCODINGS[encoding]
    if spec.dtype is np.uint16:
        rows = rows.view(">u2" if big_endian else "<u2").astype(np.uint16)
    return rows.reshape(height, width, spec.channels) if spec.channels > 1 else rows.reshape(height, width)


def image_to_rgb(msg: Any) -> np.ndarray:
    """`sensor_msgs/Image` (or anything with its fields) -> HxWx3 uint8 RGB, C-contiguous."""
    pixels = image_to_array(msg)
    spec = RAW_ENCODINGS[msg.encoding]
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if spec.cv2_code is not None:
        return cv2.cvtColor(pixels, spec.cv2_code)
    if spec.order is None:
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    return np.ascontiguousarray(pixels[:, :, list(spec.order)])


def _open_compressed(msg: Any) -> tuple[str, PILImage.Image]:
    try:
        fmt, data = msg.format, msg.data
    except AttributeError as exc:
        raise ImageDecodeError("bad_message", f"not a CompressedImage message: {exc}") from None
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("zero_size", f"compressed image (format {fmt!r}) has no data")
    data = buf.tobytes()
    sized = header_size(data[: 1 << 22])
    if sized is not None:  # PNG / JPEG: refused before Pillow allocates anything
        check_pixels(*sized, f"compressed image (format {fmt!r})")
    try:
        img = open_header(io.BytesIO(data))
        check_pixels(img.width, img.height, f"compressed image (format {fmt!r})")
        img.load()
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, bombs
        raise ImageDecodeError(
            "corrupt_compressed",
            f"could not decode compressed image (format {fmt!r}, {buf.size} bytes): {error_reason(exc)}",
        ) from None
    if img.width == 0 or img.height == 0:
        raise ImageDecodeError("zero_size", f"compressed image decoded to {img.width}x{img.height}")
    return fmt, img


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """`sensor_msgs/CompressedImage` (JPEG, PNG, anything Pillow reads) -> HxWx3 uint8 RGB."""
    _, img = _open_compressed(msg)
    with img:
        if img.mode.startswith("I"):  # 16/32-bit grey PNG: keep the most significant byte
            grey = np.asarray(img).astype(np.uint32)
            grey = (grey >> 8 if grey.max(initial=0) > 255 else grey).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage (it has `format` and no `encoding`)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def message_to_rgb(msg: Any) -> np.ndarray:
    """Image or CompressedImage -> HxWx3 uint8 RGB."""
    return compressed_to_rgb(msg) if is_compressed(msg) else image_to_rgb(msg)


def message_to_label(msg: Any) -> np.ndarray:
    """A label mask (mono8 / 8UC1 Image, or a lossless 8-bit grey CompressedImage) -> HxW uint8
    class ids. JPEG would blur class ids, so a lossy label is refused."""
    if not is_compressed(msg):
        if getattr(msg, "encoding", None) not in LABEL_ENCODINGS:
            raise ImageDecodeError(
                "label_encoding",
                f"label images must be mono8 or 8UC1, got {getattr(msg, 'encoding', None)!r}",
            )
        return image_to_array(msg)
    fmt = str(getattr(msg, "format", "")).lower()
    if "jpeg" in fmt or "jpg" in fmt:
        raise ImageDecodeError("label_encoding", f"label masks must be lossless; got CompressedImage format {fmt!r}")
    _, img = _open_compressed(msg)
    with img:
        if img.mode != "L":
            raise ImageDecodeError(
                "label_encoding",
                f"label CompressedImage ({fmt!r}) is not a single-channel 8-bit PNG (mode {img.mode})",
            )
        return np.array(img)
