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


class OutputWriteError(OSError):
    """An output file that could not be written (a full disk, a vanished folder); the message
    names the file."""


def write_image(path: str | os.PathLike, image) -> None:
    """cv2.imwrite, checked: OutputWriteError naming the file when nothing was written (cv2 only
    returns False), with the free space left where it is."""
    import shutil

    import cv2

    try:
        ok = bool(cv2.imwrite(os.fspath(path), image))
    except cv2.error as exc:
        ok, why = False, str(exc).strip().splitlines()[-1]
    else:
        why = "the encoder wrote nothing"
    if not ok:
        try:
            free = shutil.disk_usage(Path(path).parent).free
            why = "the disk is full" if free < 2**20 else f"{why}, {free / 2**20:.0f} MiB free there"
        except OSError as exc:
            why = exc.strerror or str(exc)
        raise OutputWriteError(f"cannot write {path}: {why}")


class OutputNameError(ValueError):
    """Input files whose outputs no name can keep apart; the message names two of them."""


def unique_output_names(paths: Iterable[str | os.PathLike]) -> list[str]:
    """One output name (without extension) per input file: its stem where that is unique, else
    with as many of its parent folders as tell it apart, and else with its extension
    (`seq1/0001.png`, `seq2/0001.png` -> `seq1_0001`, `seq2_0001`; `frame.png`, `frame.jpg` ->
    `frame_png`, `frame_jpg`). Names that differ only in case count as equal (case-insensitive
    file systems); one file listed twice keeps one name. OutputNameError naming two inputs when no
    name can separate them, so a tool refuses before it works instead of overwriting outputs."""
    paths = [Path(p) for p in paths]

    def name(p: Path, depth: int, ext: bool) -> str:
        parents = [part for part in p.parent.parts[len(p.parent.parts) - depth :] if part not in ("/", ".")]
        base = "_".join([*parents, p.stem]) if depth else p.stem
        return f"{base}_{p.suffix.lstrip('.')}" if ext and p.suffix else base

    names = [p.stem for p in paths]
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n.casefold(), []).append(i)
    for members in groups.values():
        distinct = sorted({paths[i] for i in members})
        if len(distinct) < 2:
            continue
        deepest = max(len(p.parent.parts) for p in distinct)
        chosen = None
        for ext in (False, True):
            for depth in range(0 if ext else 1, deepest + 1):
                candidate = {p: name(p, depth, ext) for p in distinct}
                if len({c.casefold() for c in candidate.values()}) == len(distinct):
                    chosen = candidate
                    break
            if chosen:
                break
        if chosen is None:
            raise OutputNameError(
                f"the outputs of {distinct[0]} and {distinct[1]} would have one name; rename one of them"
            )
        for i in members:
            names[i] = chosen[paths[i]]
    owner: dict[str, Path] = {}
    for p, n in zip(paths, names, strict=True):
        other = owner.setdefault(n.casefold(), p)
        if other != p:
            raise OutputNameError(f"the outputs of {other} and {p} would both be named {n!r}; rename one of them")
    return names
