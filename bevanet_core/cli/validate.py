"""Argument checks shared by the bevanet-* commands, run before any model is loaded or any frame
is read, so a bad value costs a one-line error (exit 2) instead of a traceback after the work.

Number checks are argparse `type=` callables (`int_range(1)`, `float_range(0, 1)`), so the
parser names the option in its message. Path checks take the resolved paths of the inputs and
refuse an output that is an input, lies inside one or contains one: an output written over its
own input destroys the data it was made from.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..paths import overlap

# ROS 2 topic names (rcl's rules): tokens of letters, digits and underscores separated by '/',
# optionally starting with '/' or '~/', no token starting with a digit, no '//' or trailing '/'
_TOPIC_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
_TOPIC = re.compile(rf"^(/|~/)?{_TOPIC_TOKEN}(/{_TOPIC_TOKEN})*$")


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi] (either bound may be None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        _check_bounds(value, text, lo, hi)
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [lo, hi] ((lo, hi] with lo_open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if lo_open and lo is not None and value <= lo:
            raise argparse.ArgumentTypeError(f"must be greater than {lo:g}, got {text}")
        _check_bounds(value, text, lo, hi)
        return value

    parse.__name__ = "number"
    return parse


def _check_bounds(value: float, text: str, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise argparse.ArgumentTypeError(f"must be at least {lo:g}, got {text}")
    if hi is not None and value > hi:
        raise argparse.ArgumentTypeError(f"must be at most {hi:g}, got {text}")


def topic_name(text: str) -> str:
    """argparse type: a valid ROS 2 topic name ('/camera/image_raw', 'image', '~/mask')."""
    if not _TOPIC.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid ROS 2 topic name (letters, digits and '_' in tokens "
            "separated by '/', no token starting with a digit, no '//' or trailing '/')"
        )
    return text


def label_topic_name(text: str) -> str:
    """A topic name, or 'none' (or '') for no labels."""
    return text if text.lower() in ("", "none") else topic_name(text)


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 for a free one."""
    return int_range(0, 65535)(text)


def max_pixels_arg(text: str) -> int:
    """argparse type: a pixel cap (`imaging.policy.parse_max_pixels`)."""
    from ..imaging.policy import parse_max_pixels

    try:
        return parse_max_pixels(text, "--max-pixels")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def tta_scales_arg(text: str):
    """argparse type: the scales of test-time augmentation, e.g. 0.75,1,1.25."""
    from ..runtime.tta import parse_scales

    try:
        return parse_scales(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_output_dir(
    parser: argparse.ArgumentParser,
    option: str,
    path: str | os.PathLike | None,
    inputs: Iterable[str | os.PathLike] = (),
) -> None:
    """An output folder: not an existing file, and apart from every input."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        parser.error(f"{option} {path}: exists and is not a folder")
    why = overlap(p, inputs)
    if why:
        parser.error(f"{option} {path} would overwrite input data: {why}")


def check_output_file(
    parser: argparse.ArgumentParser,
    option: str,
    path: str | os.PathLike | None,
    inputs: Iterable[str | os.PathLike] = (),
) -> None:
    """An output file: not a folder, its folder exists or can be made, apart from every input."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        parser.error(f"{option} {path}: is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        parser.error(f"{option} {path}: {ancestor} is a file, not a folder")
    if ancestor.exists() and not os.access(ancestor, os.W_OK):
        parser.error(f"{option} {path}: folder {ancestor} is not writable")
    why = overlap(p, inputs)
    if why:
        parser.error(f"{option} {path} would overwrite input data: {why}")


def check_input(
    parser: argparse.ArgumentParser,
    option: str,
    path: str | os.PathLike | None,
    kind: str = "any",
) -> None:
    """An input path that must exist: kind 'file', 'dir' or 'any'."""
    if path is None:
        return
    p = Path(path)
    if not p.exists():
        parser.error(f"{option} {path}: does not exist")
    if kind == "file" and not p.is_file():
        parser.error(f"{option} {path}: is a folder; give a file")
    if kind == "dir" and not p.is_dir():
        parser.error(f"{option} {path}: is a file; give a folder")
