"""Building rosbags messages (Image, CompressedImage, CameraInfo) from numpy arrays, without ROS.

Messages are the dataclasses of a `rosbags` typestore. Decoding them is the job of
`bevanet_core.serving.decode`, the decoder the node uses too.
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


def compressed_msg(rgb: np.ndarray, stamp: int, frame_id: str, fmt: str = "jpeg", quality: int = 90) -> Any:
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
        raise ValueError(f"OpenCV could not {fmt}-encode a {rgb.shape} image")
    desc = f"{'mono8' if mono else 'rgb8'}; {fmt} compressed {'mono8' if mono else 'bgr8'}"
    return typestore().types[COMPRESSED_IMAGE](header=header(stamp, frame_id), format=desc, data=buf.reshape(-1))


def camera_info_msg(width: int, height: int, stamp: int, frame_id: str, fx: float | None = None) -> Any:
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
        roi=ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def serialize(msg: Any, msgtype: str) -> bytes:
    """CDR bytes of a typestore message."""
    return typestore().serialize_cdr(msg, msgtype)
