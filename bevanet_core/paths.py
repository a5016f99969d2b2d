"""What everything that writes shares: the path check (an output must never be, lie inside, or
contain one of its inputs, since writing it would destroy the data it is made from) and the one
atomic write (a temporary file renamed into place, so a crash never leaves half a file), and the
cache folder (exported models, engines, the auto backend's probes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Optional


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


def file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], object], *, tmp_suffix: str = ".tmp") -> Path:
    """Calls write_fn(tmp_path) then renames into place, so a crash never leaves half a file;
    returns the path written. The temporary file lies beside `path` and ends in `tmp_suffix`
    (pass `path.suffix` for writers that pick the format from the name, e.g. cv2.imwrite).
    The file gets the mode the umask gives (mkstemp's own 0600 would hide it from other users,
    e.g. a node running under another account)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=tmp_suffix, dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def cache_dir(configured: Optional[str | os.PathLike] = None) -> Path:
    """The cache folder: `configured` (SegmenterConfig.cache_dir) when given, else $BEVANET_CACHE,
    else $XDG_CACHE_HOME/bevanet_ros, else ~/.cache/bevanet_ros. Exported ONNX models, their
    precision conversions and TensorRT engines live under it (`bevanet_core.export.artifacts`),
    and so do the auto backend's probes (`auto/`)."""
    if configured:
        return Path(configured)
    if os.environ.get("BEVANET_CACHE"):
        return Path(os.environ["BEVANET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bevanet_ros"
