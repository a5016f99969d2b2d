"""Atomic rosbag2 writing (MCAP or sqlite3) through the pure-Python `rosbags` library.

A bag is built in a hidden temporary folder beside its destination and renamed into place only
when it was closed cleanly, so an error, a full disk or Ctrl-C never leaves a half-written bag
that a later tool would mistake for a good one. A process killed outright (SIGKILL, power loss)
cannot clean up after itself: its `.<name>.partial-*` folder records the writer's pid and host,
and the next writer of the same destination removes it once that process is gone (and names
any it cannot attribute). A destination that is, contains or lies inside one of the bags it is
made from is refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from ..paths import overlap
from . import messages

log = logging.getLogger(__name__)

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# MCAP chunk compression: every chunk zstd-compressed inside the .mcap, which rosbag2's MCAP
# plugin, Foxglove, the mcap CLI and rosbags all read as is (no `ros2 bag decompress` step).
COMPRESSIONS = ("zstd", "none")
BAG_VERSION = 8  # readable by rosbag2 from Iron on, and by rosbags / Foxglove


class BagWriteError(RuntimeError):
    """The bag could not be written (bad destination, unknown topic, failed serialization...)."""


OWNER_FILE = "writer.owner"  # inside a partial folder: "<pid> <host>" of the process writing it


def _owner_alive(folder: Path) -> bool | None:
    """Whether the process that wrote `folder` still runs: True, False, or None when the folder
    names no owner on this host (another machine's, or not made by BagWriter)."""
    try:
        pid_text, host = (folder / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_partials(path: Path) -> tuple[list[Path], list[Path]]:
    """Removes the partial folders of `path` left by writers that were killed; returns (removed,
    kept): kept are those whose writer still runs or cannot be told, each named in a warning."""
    removed, kept = [], []
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return removed, kept
    for folder in sorted(parent.glob(f".{path.name}.partial-*")):
        if not folder.is_dir():
            continue
        alive = _owner_alive(folder)
        if alive is False:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.warning("removed %s, left by a killed earlier writer of %s", folder, path)
        else:
            kept.append(folder)
            why = "its writer still runs" if alive else "no owner on this host is recorded"
            log.warning("leaving %s (a partial bag of %s; %s); delete it by hand if it is stale", folder, path, why)
    return removed, kept


def _check_destination(path: Path, overwrite: bool) -> None:
    if path.suffix in (".mcap", ".db3", ".bag"):
        raise BagWriteError(
            f"{path}: a rosbag2 bag is a folder; give the folder name without {path.suffix!r} "
            f"(the {path.suffix} file is created inside it)"
        )
    if path.exists() and not overwrite:
        raise BagWriteError(f"{path} already exists; remove it or pass overwrite=True (--overwrite)")
    if path.exists() and not (path / "metadata.yaml").exists() and any(path.iterdir()):
        raise BagWriteError(f"refusing to overwrite {path}: it is a non-empty folder but not a rosbag2 bag")
    if not path.parent.exists():
        raise BagWriteError(f"output folder {path.parent} does not exist")


class BagWriter:
    """Context manager writing a rosbag2 bag atomically.

    >>> with BagWriter("out_bag", storage="mcap") as bag:
    ...     bag.add_topic("/camera/image_raw", messages.IMAGE)
    ...     bag.write("/camera/image_raw", stamp_ns, msg)
    """

    def __init__(
        self,
        path: Union[str, Path],
        storage: str = "mcap",
        overwrite: bool = False,
        custom_data: dict[str, str] | None = None,
        inputs: Sequence[Union[str, Path]] = (),
        compression: str = "zstd",
    ):
        if storage not in STORAGES:
            raise BagWriteError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if compression not in COMPRESSIONS:
            raise BagWriteError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        # sqlite3 bags stay uncompressed: per-message compression there needs a decompressing
        # reader on the other side
        self.compression = compression if storage == "mcap" else "none"
        self.path = Path(path)
        self.storage = storage
        self.overwrite = overwrite
        self.custom_data = dict(custom_data or {})
        self.inputs = [Path(p) for p in inputs]  # bags this one is made from: never replaced
        self._tmpdir: Path | None = None
        self._writer: Writer | None = None
        self._conns: dict[str, Connection] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    # -------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> BagWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def open(self) -> None:
        why = overlap(self.path, self.inputs)
        if why:
            raise BagWriteError(f"refusing to write {self.path}: {why}, which it is made from")
        _check_destination(self.path, self.overwrite)
        clean_stale_partials(self.path)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        (self._tmpdir / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
        # the bag keeps its final name inside the temp folder, so its storage file is named right
        self._writer = Writer(
            self._tmpdir / self.path.name,
            version=BAG_VERSION,
            storage_plugin=STORAGES[self.storage],
        )
        if self.compression == "zstd":
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        for key, value in self.custom_data.items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()

    def close(self) -> Path:
        """Finish the bag and move it to its destination; returns that path."""
        if self._writer is None or self._tmpdir is None:
            raise BagWriteError(f"{self.path}: bag is not open")
        try:
            self._writer.close()
            self._writer = None
            built = self._tmpdir / self.path.name
            if self.path.exists():  # overwrite: move the old bag aside first, delete it after
                os.replace(self.path, self._tmpdir / "replaced")
            os.replace(built, self.path)
        except BaseException:
            self.abort()
            raise
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the destination is left untouched."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # the temp folder is deleted anyway
                pass
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -------------------------------------------------------------------------------- writing
    def add_topic(self, topic: str, msgtype: str, msgdef: str | None = None, rihs01: str | None = None) -> None:
        """Declare a topic. Without msgdef the Humble definition from the typestore is used."""
        if self._writer is None:
            raise BagWriteError(f"{self.path}: open the bag before adding topics")
        if topic in self._conns:
            if self._types[topic] != msgtype:
                raise BagWriteError(f"topic {topic} already declared as {self._types[topic]}, not {msgtype}")
            return
        if msgdef is not None and rihs01 is not None:
            conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
        else:
            conn = self._writer.add_connection(topic, msgtype, typestore=messages.typestore())
        self._conns[topic] = conn
        self._types[topic] = msgtype
        self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Serialize a typestore message and write it with log time `stamp_ns`."""
        if topic not in self._conns:
            raise BagWriteError(f"topic {topic} was not declared with add_topic()")
        self.write_raw(topic, stamp_ns, messages.serialize(msg, self._types[topic]))

    def write_raw(self, topic: str, stamp_ns: int, data: Union[bytes, memoryview, np.ndarray]) -> None:
        """Write already-serialized CDR bytes."""
        if self._writer is None:
            raise BagWriteError(f"{self.path}: bag is not open")
        if topic not in self._conns:
            raise BagWriteError(f"topic {topic} was not declared with add_topic()")
        if isinstance(data, np.ndarray):
            data = data.tobytes()
        self._writer.write(self._conns[topic], int(stamp_ns), data)
        self.counts[topic] += 1


# ------------------------------------------------------------------------------------ camera bags
@dataclass
class Frame:
    """One camera frame to record: RGB pixels, an optional label mask and where it came from."""

    rgb: np.ndarray
    label: np.ndarray | None = None
    name: str = ""


@dataclass
class CameraBagOptions:
    """Topics, encoding and timing of a recorded camera stream."""

    rate: float = 10.0
    storage: str = "mcap"
    compression: str = "zstd"  # MCAP chunk compression ("none": as `ros2 bag record` writes)
    compressed: bool = False
    jpeg_quality: int = 90
    image_topic: str = "/camera/image_raw"
    info_topic: str = "/camera/camera_info"
    label_topic: str = "/camera/labels"
    frame_id: str = "camera"
    start_time: float = 1_700_000_000.0  # seconds; fixed so that bags are reproducible
    overwrite: bool = False
    custom_data: dict[str, str] = field(default_factory=dict)

    def resolved_image_topic(self) -> str:
        """The compressed transport lives on `<topic>/compressed`, as image_transport names it."""
        if self.compressed and not self.image_topic.endswith("/compressed"):
            return self.image_topic.rstrip("/") + "/compressed"
        return self.image_topic


@dataclass
class BagSummary:
    """What a write produced."""

    path: Path
    frames: int
    labels: int
    duration_s: float
    size_bytes: int
    topics: dict[str, int]


def bag_size(path: Path) -> int:
    """Total bytes of a bag folder (or file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_camera_bag(
    frames: Iterable[Frame], out: Union[str, Path], options: CameraBagOptions | None = None
) -> BagSummary:
    """Record `frames` as a camera stream: image (raw rgb8 or JPEG), CameraInfo and mono8 labels.

    Frame i is stamped start_time + i / rate on every topic (header stamp = bag log time).
    Raises BagWriteError (and writes nothing) if there are no frames or anything fails.
    """
    opt = options or CameraBagOptions()
    if not opt.rate > 0:
        raise BagWriteError(f"rate must be > 0 Hz, got {opt.rate}")
    image_topic = opt.resolved_image_topic()
    period_ns = 1e9 / opt.rate
    start_ns = int(round(opt.start_time * 1e9))
    custom = {
        "bevanet.rate_hz": f"{opt.rate:g}",
        "bevanet.image_topic": image_topic,
        "bevanet.label_topic": opt.label_topic,
        **opt.custom_data,
    }
    n = n_labels = 0
    size: tuple | None = None
    with BagWriter(
        out,
        storage=opt.storage,
        overwrite=opt.overwrite,
        custom_data=custom,
        compression=opt.compression,
    ) as bag:
        bag.add_topic(image_topic, messages.COMPRESSED_IMAGE if opt.compressed else messages.IMAGE)
        bag.add_topic(opt.info_topic, messages.CAMERA_INFO)
        for i, frame in enumerate(frames):
            rgb = np.asarray(frame.rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise BagWriteError(f"frame {i} ({frame.name}): expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
            h, w = rgb.shape[:2]
            if size is not None and size != (w, h):
                raise BagWriteError(
                    f"frame {i} ({frame.name}) is {w}x{h} but earlier frames are "
                    f"{size[0]}x{size[1]}; one camera stream has one size (use resize)"
                )
            size = (w, h)
            stamp = start_ns + int(round(i * period_ns))
            bag.write(opt.info_topic, stamp, messages.camera_info_msg(w, h, stamp, opt.frame_id))
            if opt.compressed:
                bag.write(
                    image_topic,
                    stamp,
                    messages.compressed_msg(rgb, stamp, opt.frame_id, quality=opt.jpeg_quality),
                )
            else:
                bag.write(image_topic, stamp, messages.image_msg(rgb, "rgb8", stamp, opt.frame_id))
            if frame.label is not None:
                label = np.asarray(frame.label)
                if label.dtype != np.uint8 or label.shape != (h, w):
                    raise BagWriteError(
                        f"frame {i} ({frame.name}): label must be {h}x{w} uint8, got {label.dtype} {label.shape}"
                    )
                if n_labels == 0:
                    bag.add_topic(opt.label_topic, messages.IMAGE)
                bag.write(opt.label_topic, stamp, messages.image_msg(label, "mono8", stamp, opt.frame_id))
                n_labels += 1
            n += 1
        if n == 0:
            raise BagWriteError(f"no frames to write into {out}")
        topics = dict(bag.counts)
    out = Path(out)
    return BagSummary(
        path=out,
        frames=n,
        labels=n_labels,
        duration_s=(n - 1) / opt.rate,
        size_bytes=bag_size(out),
        topics=topics,
    )
