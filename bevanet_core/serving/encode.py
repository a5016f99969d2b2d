"""The node's output images as `sensor_msgs/Image` fields, on any message object with those
fields (no ROS here; `decode.py` is the other direction)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

_CHANNELS = {"mono8": 1, "rgb8": 3}


def fill_image(msg: Any, array: np.ndarray, encoding: str, header: Any = None) -> Any:
    """HxW (mono8) or HxWx3 (rgb8) uint8 `array` into `msg` (header copied when given); returns
    `msg`. ValueError when the array is not of that encoding."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != np.uint8 or _CHANNELS.get(encoding) != channels:
        raise ValueError(f"{array.dtype} array of shape {array.shape} is not {encoding}")
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 1 if sys.byteorder == "big" else 0
    msg.step = int(array.shape[1] * channels)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg
