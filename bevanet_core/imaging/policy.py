"""The input policy of every entry point (the node, bevanet-bag-eval, bevanet-predict,
bevanet-eval, bevanet-make-bag, the datasets): what a frame may be before anything is decoded.

A frame may have at most `max_pixels()` pixels: 64 Mpx unless `set_max_pixels` (the tools'
--max-pixels) or the environment variable BEVANET_MAX_PIXELS says otherwise. The size is taken
from the PNG/JPEG header (other formats: Pillow's lazy header read; raw messages: their
fields) before anything is decoded or allocated, so a 20000x20000 PNG of a few hundred
kilobytes is refused in microseconds instead of asking for gigabytes. Every refusal and every
decode failure is an `ImageDecodeError` whose `kind` names it in one word, for counting.

Kept free of torch, so that a tool can refuse a bad input before it loads a model.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image as PILImage

MAX_PIXELS = 64 * 1024 * 1024  # 64 Mpx: far above any camera, far below an allocation bomb
MAX_PIXELS_ENV = "BEVANET_MAX_PIXELS"
_max_pixels: int | None = None  # set_max_pixels(); None: the environment, else MAX_PIXELS


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image. `kind` names the problem in one word."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_max_pixels(value: Any, source: str = "max_pixels") -> int:
    """A pixel cap from a number or text ('64000000', '64e6'); ValueError naming `source`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a number of pixels, got {value!r}") from None
    if not number >= 1 or number != number or number > 2**40:
        raise ValueError(f"{source} must lie in 1..2^40 pixels, got {value!r}")
    return int(number)


def max_pixels() -> int:
    """The largest frame (width * height) any tool or the node decodes."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get(MAX_PIXELS_ENV)
    return parse_max_pixels(env, MAX_PIXELS_ENV) if env else MAX_PIXELS


def set_max_pixels(value: int | None) -> None:
    """Sets the process-wide pixel cap (None: back to the environment / the default)."""
    global _max_pixels
    _max_pixels = None if value is None else parse_max_pixels(value)


def check_pixels(width: int, height: int, what: str = "image") -> None:
    """Raises ImageDecodeError('too_large') when width x height exceeds the pixel cap."""
    cap = max_pixels()
    if width * height > cap:
        raise ImageDecodeError(
            "too_large",
            f"{what} {width}x{height} ({width * height} pixels) exceeds the cap of {cap} pixels "
            f"(set {MAX_PIXELS_ENV} to change it)",
        )


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): C0-CF except
# DHT (C4), JPG (C8) and DAC (CC)
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of PNG or JPEG data, or None when `head` is neither or
    too short to tell. Reads only what the header says; nothing is decoded."""
    if head[:8] == _PNG_MAGIC:
        if len(head) >= 24 and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        return None
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None  # not a marker where one must be: corrupt, let the decoder say so
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


def _jpeg_head(f: Any, limit: int = 1 << 22) -> bytes:
    """The bytes of a JPEG file up to its frame header (APP segments such as EXIF thumbnails can
    push it far from the start), at most `limit` bytes."""
    data = bytearray(f.read(1 << 16))
    while header_size(bytes(data)) is None and len(data) < limit:
        more = f.read(1 << 16)
        if not more:
            break
        data += more
    return bytes(data)


def open_header(source: Any) -> PILImage.Image:
    """Pillow's lazy open (header only). Its own decompression-bomb guard is left to ours: the
    cap above is checked on the size the header gives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            return PILImage.open(source)
        except PILImage.DecompressionBombError as exc:
            raise ImageDecodeError("too_large", f"image exceeds the pixel cap ({exc})") from None


def error_reason(exc: BaseException) -> str:
    return str(exc).split(" <_io.")[0] or type(exc).__name__  # drop PIL's BytesIO repr


def image_file_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header alone. Raises ImageDecodeError
    ('unreadable_file', 'unknown_format') when the file cannot be read or identified."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:2] == b"\xff\xd8":
                f.seek(0)
                head = _jpeg_head(f)
    except OSError as exc:
        raise ImageDecodeError("unreadable_file", f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ImageDecodeError("zero_size", f"{path}: the file is empty")
    sized = header_size(head)
    if sized is not None:
        return sized
    try:  # BMP, TIFF, PPM/PGM, WebP, ...: Pillow reads their headers without decoding
        with open_header(path) as img:
            return img.width, img.height
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types for unknown data
        raise ImageDecodeError(
            "unknown_format", f"{path}: not an image file that can be read ({error_reason(exc)})"
        ) from None


def read_image_file(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """An image file decoded by OpenCV with `flags` (default: 3-channel BGR), after its header
    passed the input policy. Raises ImageDecodeError naming the file and the problem
    ('too_large', 'zero_size', 'unknown_format', 'corrupt_file', 'unreadable_file')."""
    width, height = image_file_size(path)
    if width <= 0 or height <= 0:
        raise ImageDecodeError("zero_size", f"{path}: the header says {width}x{height}")
    check_pixels(width, height, f"{path}:")
    image = cv2.imread(str(path), flags)
    if image is None or image.size == 0:
        raise ImageDecodeError("corrupt_file", f"{path}: the {width}x{height} image cannot be decoded (corrupt?)")
    return image
