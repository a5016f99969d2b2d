"""Bags at the storage level: the records a reader yields (`RawMessage`, `TopicInfo`), the error
for a missing, truncated or corrupt bag (`BagReadError`), and the linear scans of MCAP, sqlite3
and ROS 1 storage files that recover every message of a damaged bag up to the damage (used by
`reader.BagReader` when rosbags cannot open a bag).
"""

from __future__ import annotations

import bz2
import mmap
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
