"""Image encodings accepted by the runtime (the ROS `sensor_msgs/Image` names) and their checks."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

# canonical encoding -> (channels, channel order giving RGB; None = replicate the single channel)
ENCODINGS: dict[str, tuple[int, Optional[tuple[int, int, int]]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "mono8": (1, None),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
}
ALIASES = {
    "rgb": "rgb8",
    "bgr": "bgr8",
    "mono": "mono8",
    "gray": "mono8",
    "grey": "mono8",
    "gray8": "mono8",
    "rgba": "rgba8",
    "bgra": "bgra8",
}

Frame = Union[np.ndarray, torch.Tensor]


def canonical_encoding(encoding: str) -> str:
    """'BGR' -> 'bgr8'; unknown names raise ValueError listing the accepted ones."""
    if not isinstance(encoding, str):
        raise ValueError(f"encoding must be a string, got {type(encoding).__name__}")
    name = encoding.strip().lower()
    name = ALIASES.get(name, name)
    if name not in ENCODINGS:
        known = ", ".join(list(ENCODINGS) + sorted(ALIASES))
        raise ValueError(f"unknown image encoding {encoding!r}; accepted: {known}")
    return name


def check_frame(frame: Frame, encoding: str, index: Optional[int] = None) -> tuple[Frame, str]:
    """Validates one frame and returns it as HxWxC (C = channels of the encoding) with the
    canonical encoding. Accepts numpy arrays or torch tensors (CPU or CUDA) of dtype uint8."""
    where = "frame" if index is None else f"frame {index}"
    enc = canonical_encoding(encoding)
    channels = ENCODINGS[enc][0]
    if isinstance(frame, np.ndarray):
        dtype_ok = frame.dtype == np.uint8
    elif isinstance(frame, torch.Tensor):
        dtype_ok = frame.dtype == torch.uint8
    else:
        raise ValueError(f"{where} must be a numpy array or torch tensor, got {type(frame).__name__}")
    if not dtype_ok:
        raise ValueError(f"{where} must have dtype uint8, got {frame.dtype}")
    if frame.ndim == 2:
        if channels != 1:
            raise ValueError(f"{where} is HxW (one channel) but encoding {enc} needs {channels} channels")
        frame = frame[:, :, None]
    elif frame.ndim != 3:
        raise ValueError(f"{where} must be HxW or HxWxC, got shape {tuple(frame.shape)}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{where} is empty (shape {tuple(frame.shape)})")
    if frame.shape[2] != channels:
        raise ValueError(f"{where} has {frame.shape[2]} channels but encoding {enc} needs {channels}")
    return frame, enc


def to_rgb_chw(frame: torch.Tensor, encoding: str) -> torch.Tensor:
    """HxWxC uint8 tensor in `encoding` -> 3xHxW uint8 RGB tensor (same device)."""
    order = ENCODINGS[encoding][1]
    chw = frame.permute(2, 0, 1)
    if order is None:
        return chw.expand(3, -1, -1)
    if order == (0, 1, 2):
        return chw[:3]
    return chw[list(order)]
