"""Reading rosbag2 (MCAP, sqlite3) and ROS 1 bags without ROS, and surviving damaged ones.

`BagReader` opens a bag through `rosbags.highlevel.AnyReader`. When that fails because the
recording never finished (no MCAP footer/summary, no ROS 1 index, no metadata.yaml) or the file
is truncated or corrupt, it falls back to a linear scan of the storage file that yields every
message before the damage and then raises `BagReadError` naming the fault and how many
messages were read. Callers therefore always get the good prefix and a clear error, never a
traceback from deep inside a storage plugin and never a silently shortened stream.
"""

from __future__ import annotations

import bz2
import mmap
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from . import messages

MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_MAGIC = b"#ROSBAG V2.0\n"


class BagReadError(RuntimeError):
    """A bag is missing, unreadable, truncated or corrupt.

    `messages_read` counts the messages delivered before the fault (0 if it could not be opened).
    """

    def __init__(self, message: str, messages_read: int = 0):
        super().__init__(message)
        self.messages_read = messages_read


@dataclass
class TopicInfo:
    """A topic of a bag: type, definition (text, 'ros2msg'/'ros2idl'/'ros1msg') and count."""

    topic: str
    msgtype: str
    msgdef: str | None = None
    msgdef_format: str = "ros2msg"
    digest: str | None = None
    count: int | None = None


@dataclass
class RawMessage:
    """One serialized message: topic, type, bag log time (ns) and payload."""

    topic: str
    msgtype: str
    log_time: int
    data: bytes


def _normalize_ros1_type(name: str) -> str:
    pkg, _, typ = name.partition("/")
    return f"{pkg}/msg/{typ}" if "/msg/" not in name else name


# ------------------------------------------------------------------------------ recovery scanners
class _Truncated(Exception):
    """Internal: the scan met the end of valid data."""


def _map(path: Path) -> memoryview:
    """Read-only memory map of a file (bags can be larger than memory)."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise _Truncated(f"{path.name} is empty")
        return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def _read_exact(buf: memoryview, pos: int, size: int) -> memoryview:
    if size < 0 or pos + size > len(buf):
        raise _Truncated(f"record at byte {pos} needs {size} bytes, only {max(0, len(buf) - pos)} left")
    return buf[pos : pos + size]


def _mcap_string(buf: memoryview, pos: int):
    (n,) = struct.unpack_from("<I", _read_exact(buf, pos, 4))
    return bytes(_read_exact(buf, pos + 4, n)).decode(), pos + 4 + n


def _decompress_mcap(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd  # installed with rosbags
        return zstd.decompress(data)
    if compression == "lz4":
        import lz4.frame  # installed with rosbags

        return lz4.frame.decompress(data)
    raise _Truncated(f"unsupported MCAP chunk compression {compression!r}")


class _McapScan:
    """Linear scan of one MCAP file: schemas, channels and messages in file order."""

    def __init__(self, path: Path):
        self.path = path
        self.topics: dict[str, TopicInfo] = {}
        self._channels: dict[int, TopicInfo] = {}
        self._schemas: dict[int, tuple] = {}

    def _records(self, buf: memoryview, base: int) -> Iterator[tuple]:
        pos = 0
        while pos < len(buf):
            head = _read_exact(buf, pos, 9)
            op, length = head[0], struct.unpack_from("<Q", head, 1)[0]
            if op == 0x06 and pos + 9 + length > len(buf):
                # a chunk cut short: hand over what is there, uncompressed chunks are salvageable
                yield op, buf[pos + 9 :], base + pos
                raise _Truncated(f"chunk at byte {base + pos} is cut short ({len(buf) - pos - 9} of {length} bytes)")
            body = _read_exact(buf, pos + 9, length)
            yield op, body, base + pos
            pos += 9 + length

    def messages(self) -> Iterator[RawMessage]:
        data = _map(self.path)
        if bytes(data[:8]) != MCAP_MAGIC:
            raise _Truncated("not an MCAP file (bad magic)")
        yield from self._walk(data[8:], 8, top=True)

    def _walk(self, buf: memoryview, base: int, top: bool) -> Iterator[RawMessage]:
        for op, body, at in self._records(buf, base):
            if op == 0x03:  # schema
                (sid,) = struct.unpack_from("<H", body)
                name, p = _mcap_string(body, 2)
                enc, p = _mcap_string(body, p)
                (n,) = struct.unpack_from("<I", _read_exact(body, p, 4))
                self._schemas[sid] = (name, enc, bytes(_read_exact(body, p + 4, n)).decode())
            elif op == 0x04:  # channel
                cid, sid = struct.unpack_from("<HH", body)
                topic, _ = _mcap_string(body, 4)
                name, enc, text = self._schemas.get(sid, ("", "ros2msg", None))
                info = TopicInfo(topic, name, text, enc or "ros2msg")
                self._channels[cid] = self.topics.setdefault(topic, info)
            elif op == 0x05:  # message
                cid, _, log_time = struct.unpack_from("<HIQ", body)
                info = self._channels.get(cid)
                if info is None:
                    raise _Truncated(f"message at byte {at} refers to unknown channel {cid}")
                yield RawMessage(info.topic, info.msgtype, log_time, bytes(body[22:]))
            elif op == 0x06 and top:  # chunk
                _, _, size, crc = struct.unpack_from("<QQQI", _read_exact(body, 0, 28))
                comp, p = _mcap_string(body, 28)
                (clen,) = struct.unpack_from("<Q", _read_exact(body, p, 8))
                if comp == "" and p + 8 + clen > len(body):  # truncated plain chunk: its prefix
                    yield from self._walk(body[p + 8 :], at + 9 + p + 8, top=False)
                    continue
                try:
                    raw = _decompress_mcap(bytes(_read_exact(body, p + 8, clen)), comp, size)
                except _Truncated:
                    raise
                except Exception as err:
                    raise _Truncated(f"chunk at byte {at} does not decompress: {err}") from None
                if len(raw) != size:
                    raise _Truncated(f"chunk at byte {at} holds {len(raw)} bytes, header says {size}")
                if crc and zlib.crc32(raw) != crc:  # 0: the writer recorded no CRC
                    raise _Truncated(f"chunk at byte {at} fails its CRC check (corrupt data)")
                yield from self._walk(memoryview(raw), at, top=False)
            elif op in (0x02, 0x0F) and top:  # footer / data end: a complete file
                return


def mcap_crc_fault(path: Path) -> str | None:
    """Checks the CRC of every chunk of an MCAP file that records one (rosbag2's recorder does;
    a CRC of 0 means none). Returns what is wrong with the first chunk that fails, or None.
    Unreadable structure is left to the readers, which report it."""
    try:
        data = _map(path)
    except (_Truncated, OSError):
        return None
    pos, end = 8, len(data)
    while pos + 9 <= end:
        op = data[pos]
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        if op in (0x02, 0x0F) or pos + 9 + length > end:  # footer / data end, or cut short
            return None
        if op == 0x06 and length >= 32:
            body = data[pos + 9 : pos + 9 + length]
            _, _, size, crc = struct.unpack_from("<QQQI", body, 0)
            (n,) = struct.unpack_from("<I", body, 28)
            if crc and 32 + n + 8 <= length:
                comp = bytes(body[32 : 32 + n]).decode(errors="replace")
                (clen,) = struct.unpack_from("<Q", body, 32 + n)
                records = bytes(body[40 + n : 40 + n + clen])
                try:
                    raw = _decompress_mcap(records, comp, size)
                except Exception as err:  # noqa: BLE001 - any codec failure is corruption
                    return f"{path.name}: chunk at byte {pos} does not decompress ({err})"
                if zlib.crc32(raw) != crc:
                    return f"{path.name}: chunk at byte {pos} fails its CRC check (corrupt data)"
        pos += 9 + length
    return None


class _Sqlite3Scan:
    """Row-by-row read of a rosbag2 .db3 that SQLite refuses to open normally."""

    def __init__(self, path: Path):
        self.path = path
        # writable_schema makes SQLite accept a file shorter than its header says (truncated)
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.con.execute("PRAGMA writable_schema=ON")
        defs = {}
        try:
            for typ, enc, text in self.con.execute(
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            ):
                defs[typ] = (enc, text)
        except sqlite3.DatabaseError:
            pass  # older bags (before Iron) have no definitions table
        self.topics: dict[str, TopicInfo] = {}
        self._ids: dict[int, TopicInfo] = {}
        for tid, name, typ in self.con.execute("SELECT id, name, type FROM topics"):
            enc, text = defs.get(typ, ("ros2msg", None))
            self._ids[tid] = self.topics[name] = TopicInfo(name, typ, text or None, enc or "ros2msg")

    def messages(self) -> Iterator[RawMessage]:
        try:
            for tid, stamp, data in self.con.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                info = self._ids[tid]
                yield RawMessage(info.topic, info.msgtype, int(stamp), bytes(data))
        except sqlite3.DatabaseError as err:
            raise _Truncated(f"SQLite: {err}") from None
        finally:
            self.con.close()


def _ros1_header(buf: memoryview) -> dict[str, bytes]:
    fields, pos = {}, 0
    while pos < len(buf):
        (n,) = struct.unpack_from("<I", _read_exact(buf, pos, 4))
        key, _, value = bytes(_read_exact(buf, pos + 4, n)).partition(b"=")
        fields[key.decode()] = value
        pos += 4 + n
    return fields


class _Ros1Scan:
    """Linear scan of a ROS 1 bag (unindexed or truncated): chunks, connections, messages."""

    def __init__(self, path: Path):
        self.path = path
        self.topics: dict[str, TopicInfo] = {}
        self._conns: dict[int, TopicInfo] = {}

    def messages(self) -> Iterator[RawMessage]:
        data = _map(self.path)
        if bytes(data[:13]) != ROS1_MAGIC:
            raise _Truncated("not a ROS 1 bag (bad magic)")
        yield from self._walk(data[13:], 13)

    def _walk(self, buf: memoryview, base: int) -> Iterator[RawMessage]:
        pos = 0
        while pos < len(buf):
            (hlen,) = struct.unpack_from("<I", _read_exact(buf, pos, 4))
            head = _ros1_header(_read_exact(buf, pos + 4, hlen))
            (dlen,) = struct.unpack_from("<I", _read_exact(buf, pos + 4 + hlen, 4))
            op = head.get("op", b"\x00")[0]
            if op == 0x05 and head.get("compression", b"none") == b"none" and pos + 8 + hlen + dlen > len(buf):
                # an uncompressed chunk cut short: its complete messages are still good
                yield from self._walk(buf[pos + 8 + hlen :], base + pos + 8 + hlen)
                raise _Truncated(f"chunk at byte {base + pos} is cut short")
            body = _read_exact(buf, pos + 8 + hlen, dlen)
            at, pos = base + pos, pos + 8 + hlen + dlen
            if op == 0x07:  # connection
                (conn,) = struct.unpack("<I", head["conn"])
                fields = _ros1_header(body)
                typ = _normalize_ros1_type(fields["type"].decode())
                info = TopicInfo(
                    head["topic"].decode(),
                    typ,
                    fields.get("message_definition", b"").decode() or None,
                    "ros1msg",
                )
                self._conns[conn] = self.topics.setdefault(info.topic, info)
            elif op == 0x02:  # message data
                (conn,) = struct.unpack("<I", head["conn"])
                sec, nsec = struct.unpack("<II", head["time"])
                info = self._conns.get(conn)
                if info is None:
                    raise _Truncated(f"message at byte {at} refers to unknown connection {conn}")
                yield RawMessage(info.topic, info.msgtype, sec * 1_000_000_000 + nsec, bytes(body))
            elif op == 0x05:  # chunk
                comp = head.get("compression", b"none").decode()
                try:
                    if comp == "none":
                        raw = bytes(body)
                    elif comp == "bz2":
                        raw = bz2.decompress(body)
                    elif comp == "lz4":
                        import lz4.frame

                        raw = lz4.frame.decompress(body)
                    else:
                        raise _Truncated(f"unsupported ROS 1 chunk compression {comp!r}")
                except _Truncated:
                    raise
                except Exception as err:
                    raise _Truncated(f"chunk at byte {at} does not decompress: {err}") from None
                yield from self._walk(memoryview(raw), at)
            elif op in (0x04, 0x06):  # index data / chunk info: the index after the data
                continue


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
