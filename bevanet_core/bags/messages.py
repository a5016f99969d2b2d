"""sensor_msgs <-> numpy conversions for rosbags messages, without ROS (and without cv_bridge).

Messages are the dataclasses of a `rosbags` typestore. Decoding accepts the encodings that
cameras and bag tools commonly produce; every decoded camera frame is returned as HxWx3 uint8
RGB, which is what the segmentation runtime takes, while label masks stay HxW uint8.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# Humble's definitions: identical for these messages in every ROS 2 distro since Foxy, so bags
# written with them read back under Humble, Iron, Jazzy and Kilted alike.
_TYPESTORE = None


class ImageDecodeError(ValueError):
    """A message could not be turned into an image (unknown encoding, wrong size, bad JPEG...)."""


def typestore():
    """The shared ROS 2 (Humble) typestore used to build and serialize messages."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
    return _TYPESTORE


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header for a stamp in integer nanoseconds."""
    ts = typestore()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return ts.types["std_msgs/msg/Header"](
        stamp=ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


# ---------------------------------------------------------------------------------------- encoding
def image_msg(array: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an HxW or HxWxC array already laid out in `encoding`."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    return typestore().types[IMAGE](
        header=header(stamp, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=int(array.strides[0]),
        data=array.reshape(-1).view(np.uint8),
    )


def compressed_msg(
    rgb: np.ndarray, stamp: int, frame_id: str, fmt: str = "jpeg", quality: int = 90
) -> Any:
    """sensor_msgs/CompressedImage (JPEG or PNG) from an RGB (or mono) uint8 array.

    `format` follows image_transport's compressed plugin: "rgb8; jpeg compressed bgr8".
    """
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed image format must be 'jpeg' or 'png', got {fmt!r}")
    mono = rgb.ndim == 2
    bgr = rgb if mono else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ImageDecodeError(f"OpenCV could not {fmt}-encode a {rgb.shape} image")
    desc = f"{'mono8' if mono else 'rgb8'}; {fmt} compressed {'mono8' if mono else 'bgr8'}"
    return typestore().types[COMPRESSED_IMAGE](
        header=header(stamp, frame_id), format=desc, data=buf.reshape(-1)
    )


def camera_info_msg(
    width: int, height: int, stamp: int, frame_id: str, fx: float | None = None
) -> Any:
    """Pinhole CameraInfo with no distortion; fx = fy defaults to the width (a ~53 deg lens)."""
    ts = typestore()
    f = float(fx if fx is not None else width)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return ts.types[CAMERA_INFO](
        header=header(stamp, frame_id),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], dtype=np.float64),
        r=np.array([1, 0, 0, 0, 1, 0, 0, 0, 1], dtype=np.float64),
        p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], dtype=np.float64),
        binning_x=0,
        binning_y=0,
        roi=ts.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def serialize(msg: Any, msgtype: str) -> bytes:
    """CDR bytes of a typestore message."""
    return typestore().serialize_cdr(msg, msgtype)


# ---------------------------------------------------------------------------------------- decoding
# encoding -> (numpy dtype, channels, conversion to RGB or None for "already RGB-ordered")
_PLAIN = {
    "rgb8": (np.uint8, 3, None),
    "bgr8": (np.uint8, 3, cv2.COLOR_BGR2RGB),
    "rgba8": (np.uint8, 4, cv2.COLOR_RGBA2RGB),
    "bgra8": (np.uint8, 4, cv2.COLOR_BGRA2RGB),
    "mono8": (np.uint8, 1, cv2.COLOR_GRAY2RGB),
    "8uc1": (np.uint8, 1, cv2.COLOR_GRAY2RGB),
    "8uc3": (np.uint8, 3, cv2.COLOR_BGR2RGB),  # OpenCV's convention for untyped 3-channel data
    "8uc4": (np.uint8, 4, cv2.COLOR_BGRA2RGB),
    "rgb16": (np.uint16, 3, None),
    "bgr16": (np.uint16, 3, cv2.COLOR_BGR2RGB),
    "rgba16": (np.uint16, 4, cv2.COLOR_RGBA2RGB),
    "bgra16": (np.uint16, 4, cv2.COLOR_BGRA2RGB),
    "mono16": (np.uint16, 1, cv2.COLOR_GRAY2RGB),
    "16uc1": (np.uint16, 1, cv2.COLOR_GRAY2RGB),
}
_BAYER = {
    "bayer_rggb8": cv2.COLOR_BayerRGGB2RGB,
    "bayer_bggr8": cv2.COLOR_BayerBGGR2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGBRG2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGRBG2RGB,
}
_YUV422 = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
SUPPORTED_ENCODINGS = sorted(set(_PLAIN) | set(_BAYER) | set(_YUV422))


def _rows(msg: Any, bytes_per_row: int) -> np.ndarray:
    """The image buffer as (height, bytes_per_row), dropping any row padding given by `step`."""
    h, step = int(msg.height), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < bytes_per_row:
        raise ImageDecodeError(
            f"{msg.encoding} image {msg.width}x{h}: step {step} is smaller than one row "
            f"({bytes_per_row} bytes)"
        )
    if data.size < step * (h - 1) + bytes_per_row:
        raise ImageDecodeError(
            f"{msg.encoding} image {msg.width}x{h} (step {step}) needs "
            f"{step * (h - 1) + bytes_per_row} bytes, message has {data.size}"
        )
    if data.size < step * h:  # last row without its padding
        data = np.concatenate([data, np.zeros(step * h - data.size, np.uint8)])
    return data[: step * h].reshape(h, step)[:, :bytes_per_row]


def image_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """Pixels of a sensor_msgs/Image as a numpy array in its own layout, plus the encoding.

    16-bit data is byte-swapped to native order when `is_bigendian` says so.
    """
    enc = str(msg.encoding).lower()
    w, h = int(msg.width), int(msg.height)
    if enc in _PLAIN:
        dtype, ch, _ = _PLAIN[enc]
        item = np.dtype(dtype).itemsize
        rows = _rows(msg, w * ch * item)
        arr = np.ascontiguousarray(rows).view(
            np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
        )
        arr = (
            arr.astype(dtype, copy=False).reshape(h, w, ch)
            if ch > 1
            else arr.astype(dtype).reshape(h, w)
        )
        return arr, enc
    if enc in _BAYER:
        return np.ascontiguousarray(_rows(msg, w)).reshape(h, w), enc
    if enc in _YUV422:
        return np.ascontiguousarray(_rows(msg, w * 2)).reshape(h, w, 2), enc
    raise ImageDecodeError(
        f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
    )


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return (arr >> 8).astype(np.uint8)  # 16-bit camera data: keep the most significant byte


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image in any supported encoding -> HxWx3 uint8 RGB."""
    arr, enc = image_to_array(msg)
    if enc in _PLAIN:
        conv = _PLAIN[enc][2]
        arr = _to_uint8(arr)
        return np.ascontiguousarray(arr) if conv is None else cv2.cvtColor(arr, conv)
    if enc in _BAYER:
        return cv2.cvtColor(arr, _BAYER[enc])
    return cv2.cvtColor(arr, _YUV422[enc])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG/anything OpenCV decodes) -> HxWx3 uint8 RGB."""
    buf = np.asarray(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError(f"empty CompressedImage (format {msg.format!r})")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(
            f"could not decode CompressedImage with format {msg.format!r} ({buf.size} bytes)"
        )
    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def message_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """Image or CompressedImage -> HxWx3 uint8 RGB."""
    if msgtype == IMAGE:
        return image_to_rgb(msg)
    if msgtype == COMPRESSED_IMAGE:
        return compressed_to_rgb(msg)
    raise ImageDecodeError(f"{msgtype} is not an image type; expected one of {IMAGE_TYPES}")


def message_to_label(msg: Any, msgtype: str) -> np.ndarray:
    """A label mask (mono8 / 8UC1 Image, or a PNG CompressedImage) -> HxW uint8 class ids.

    JPEG would blur class ids, so a lossy CompressedImage label is refused.
    """
    if msgtype == IMAGE:
        arr, enc = image_to_array(msg)
        if enc not in ("mono8", "8uc1"):
            raise ImageDecodeError(f"label images must be mono8 or 8UC1, got {msg.encoding!r}")
        return np.ascontiguousarray(arr)
    if msgtype == COMPRESSED_IMAGE:
        if "jpeg" in str(msg.format).lower() or "jpg" in str(msg.format).lower():
            raise ImageDecodeError(
                f"label masks must be lossless; got CompressedImage format {msg.format!r}"
            )
        img = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 2 or img.dtype != np.uint8:
            raise ImageDecodeError(
                f"label CompressedImage ({msg.format!r}) is not a single-channel 8-bit PNG"
            )
        return img
    raise ImageDecodeError(f"{msgtype} cannot carry a label mask; expected {IMAGE} (mono8)")
