"""Path checks shared by everything that writes: an output must never be, lie inside, or contain
one of its inputs, since writing it would destroy the data it is made from."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def resolved(path: str | os.PathLike) -> Path:
    """The absolute path with '~', symbolic links and '..' resolved (it need not exist)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def overlap(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> str | None:
    """Why `output` may not be written given `inputs` (it is one, lies inside one, or contains
    one), or None when they are apart."""
    out = resolved(output)
    for item in inputs:
        src = resolved(item)
        if out == src:
            return f"it is the input {item}"
        if src in out.parents:
            return f"it lies inside the input {item}"
        if out in src.parents:
            return f"it contains the input {item}"
    return None
