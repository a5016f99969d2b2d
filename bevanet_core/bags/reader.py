"""Reading rosbag2 (MCAP, sqlite3) and ROS 1 bags without ROS, and surviving damaged ones.

`BagReader` opens a bag through `rosbags.highlevel.AnyReader`. When that fails because the
recording never finished (no MCAP footer/summary, no ROS 1 index, no metadata.yaml) or the file
is truncated or corrupt, it falls back to a linear scan of the storage file that yields every
message before the damage and then raises `BagReadError` naming the fault and how many
messages were read. Callers therefore always get the good prefix and a clear error, never a
traceback from deep inside a storage plugin and never a silently shortened stream. The records,
the error and the scans are in storage.py.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from . import messages
from .storage import (
    BagReadError,
    RawMessage,
    TopicInfo,
    _McapScan,
    _Ros1Scan,
    _Sqlite3Scan,
    _Truncated,
    mcap_crc_fault,
)


# -------------------------------------------------------------------------------------- reader
class BagReader:
    """Read any rosbag2 (MCAP/sqlite3, directory or single file) or ROS 1 bag.

    Use as a context manager; `topics` lists what is inside; `messages()` yields `RawMessage`s
    in time order; `deserialize()` turns one into a typestore message.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.ros1 = self.path.suffix == ".bag"
        self.topics: dict[str, TopicInfo] = {}
        self.recovered: str | None = None  # why the normal reader failed, when it did
        self._any: AnyReader | None = None
        self._scans: list[Any] = []
        self._typestore = None

    def __enter__(self) -> BagReader:
        self.open()
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def open(self) -> None:
        if not self.path.exists():
            raise BagReadError(f"bag {self.path} does not exist")
        fault = self._crc_fault()
        if fault is not None:  # read like a truncated bag: every message before the bad chunk
            self.recovered = fault
            self._open_recovery()
            return
        try:
            reader = AnyReader([self.path])
            reader.open()
        except Exception as err:  # any storage/parse failure: try the linear recovery scan
            self.recovered = f"{type(err).__name__}: {' '.join(str(err).split())}"  # one line
            self._open_recovery()
            return
        self._any = reader
        self._typestore = reader.typestore
        for conn in reader.connections:
            fmt = "ros1msg" if self.ros1 else ("ros2idl" if conn.msgdef.format.name == "IDL" else "ros2msg")
            info = self.topics.setdefault(
                conn.topic,
                TopicInfo(conn.topic, conn.msgtype, conn.msgdef.data or None, fmt, conn.digest or None, 0),
            )
            info.count = (info.count or 0) + conn.msgcount

    def _crc_fault(self) -> str | None:
        if self.ros1:
            return None
        try:
            files = self._storage_files()
        except BagReadError:
            return None
        for f in files:
            if f.suffix == ".mcap":
                fault = mcap_crc_fault(f)
                if fault is not None:
                    return fault
        return None

    def _storage_files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        files = sorted(p for p in self.path.iterdir() if p.suffix in (".mcap", ".db3"))
        if not files:
            raise BagReadError(
                f"{self.path} is not a bag: no metadata.yaml, no .mcap or .db3 file inside ({self.recovered})"
            )
        return files

    def _open_recovery(self) -> None:
        if self.ros1:
            self._scans = [_Ros1Scan(self.path)]
        else:
            scans = []
            for f in self._storage_files():
                if f.suffix == ".mcap":
                    scans.append(_McapScan(f))
                elif f.suffix == ".db3":
                    try:
                        scans.append(_Sqlite3Scan(f))
                    except sqlite3.DatabaseError as err:
                        raise BagReadError(
                            f"bag {self.path}: {f.name} is not a readable SQLite "
                            f"database ({err}; normal open said {self.recovered})"
                        ) from None
                else:
                    raise BagReadError(f"bag {self.path}: cannot read {f.name} ({self.recovered})")
            self._scans = scans
        for scan in self._scans:  # sqlite knows its topics up front; MCAP/ROS 1 learn them while scanning
            self.topics.update(scan.topics)

    def close(self) -> None:
        if self._any is not None:
            self._any.close()
            self._any = None

    def scan_topics(self) -> dict[str, TopicInfo]:
        """Topics; in recovery mode a damaged MCAP/ROS 1 bag is scanned once to find them."""
        if self._any is None and not self.topics:
            try:
                for _ in self.messages():
                    pass
            except BagReadError:
                pass
        return self.topics

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[RawMessage]:
        """Messages of `topics` (all when None) in time order; raises BagReadError at a fault."""
        wanted = set(topics) if topics is not None else None
        count = 0
        if self._any is not None:
            conns = [c for c in self._any.connections if wanted is None or c.topic in wanted]
            if not conns:
                return
            try:
                for conn, stamp, data in self._any.messages(connections=conns):
                    count += 1
                    yield RawMessage(conn.topic, conn.msgtype, stamp, bytes(data))
            except Exception as err:
                raise BagReadError(
                    f"bag {self.path} is corrupt: {type(err).__name__}: {err} ({count} messages read before the fault)",
                    count,
                ) from None
            return
        for scan in self._scans:
            try:
                for msg in scan.messages():
                    self.topics.setdefault(msg.topic, scan.topics[msg.topic])
                    if wanted is None or msg.topic in wanted:
                        count += 1
                        yield msg
            except (_Truncated, struct.error, KeyError, UnicodeDecodeError) as err:
                raise BagReadError(
                    f"bag {self.path} is truncated or corrupt: {err} "
                    f"({count} messages read before the fault; it could not be opened normally: "
                    f"{self.recovered})",
                    count,
                ) from None
        raise BagReadError(
            f"bag {self.path} was not closed cleanly ({self.recovered}); all {count} messages "
            "that the storage holds were read",
            count,
        )

    # ------------------------------------------------------------------------------ decoding
    def _recovery_typestore(self):
        """Types from the definitions stored in the bag, else from ROS 2 Humble / ROS 1 Noetic."""
        if self._typestore is None:
            store = get_typestore(Stores.ROS1_NOETIC if self.ros1 else Stores.ROS2_HUMBLE)
            types: dict[str, Any] = {}
            for info in self.topics.values():
                if not info.msgdef:
                    continue
                try:
                    if info.msgdef_format == "ros2idl":
                        types.update(get_types_from_idl(info.msgdef))
                    else:
                        types.update(get_types_from_msg(info.msgdef, info.msgtype))
                except Exception:
                    continue  # keep the distro's definition
            store.register(types)
            self._typestore = store
        return self._typestore

    def deserialize(self, msg: RawMessage) -> Any:
        """Typestore object of a raw message."""
        store = self._typestore if self._any is not None else self._recovery_typestore()
        if self.ros1:
            return store.deserialize_ros1(msg.data, msg.msgtype)
        return store.deserialize_cdr(msg.data, msg.msgtype)

    def to_cdr(self, msg: RawMessage) -> bytes:
        """The message as ROS 2 CDR bytes (converted for ROS 1 bags)."""
        if not self.ros1:
            return msg.data
        return to_ros2_cdr(self.deserialize(msg), msg.msgtype)


def to_ros2_cdr(msg: Any, msgtype: str) -> bytes:
    """Re-serialize a ROS 1 message of a common sensor type as ROS 2 (Humble) CDR.

    ROS 1 headers carry `seq`, which ROS 2 dropped, and CameraInfo's fields were upper-case
    (D, K, R, P); fields are copied by name, case-insensitively.
    """
    return messages.serialize(convert_to_ros2(msg, msgtype), msgtype)


def convert_to_ros2(msg: Any, msgtype: str) -> Any:
    """Build the Humble typestore object of `msgtype` from an object with the same fields."""
    store = messages.typestore()
    if msgtype not in store.fielddefs:
        raise KeyError(f"no ROS 2 definition for {msgtype}")
    if msgtype == "builtin_interfaces/msg/Time":
        return store.types[msgtype](sec=int(msg.sec), nanosec=int(getattr(msg, "nanosec", getattr(msg, "nsec", 0))))
    _, fields = store.fielddefs[msgtype]
    values = {}
    for name, (kind, sub) in fields:
        value = getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())
        if kind.name == "NAME":
            value = convert_to_ros2(value, sub)
        values[name] = value
    return store.types[msgtype](**values)


def iter_messages(
    path: Union[str, Path],
    topics: Sequence[str] | None = None,
    on_error: Callable[[BagReadError], None] | None = None,
) -> Iterator[tuple]:
    """(RawMessage, decoded message) pairs of a bag; a fault goes to `on_error` (or raises)."""
    with BagReader(path) as bag:
        try:
            for raw in bag.messages(topics):
                yield raw, bag.deserialize(raw)
        except BagReadError as err:
            if on_error is None:
                raise
            on_error(err)
