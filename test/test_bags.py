"""Bag writing and reading: message conversions, make-bag, atomicity, damaged bags, ROS 1 bags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the rosbags library is not installed")

from bevanet_core.bags import messages  # noqa: E402
from bevanet_core.bags.reader import BagReader, BagReadError  # noqa: E402
from bevanet_core.bags.writer import (  # noqa: E402
    BagWriteError,
    BagWriter,
    CameraBagOptions,
    Frame,
    write_camera_bag,
)
from bevanet_core.cli import make_bag  # noqa: E402
from bevanet_core.serving import decode  # noqa: E402

RNG = np.random.default_rng(0)


def frames(n: int, h: int = 48, w: int = 64, labels: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        Frame(
            rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            label=rng.integers(0, 11, (h, w), dtype=np.uint8) if labels else None,
            name=f"f{i}",
        )
        for i in range(n)
    ]


def read_all(path, topics=None):
    """{topic: [(header stamp, decoded message)]} of a bag."""
    out = {}
    with BagReader(path) as bag:
        for raw in bag.messages(topics):
            msg = bag.deserialize(raw)
            out.setdefault(raw.topic, []).append((messages.stamp_ns(msg), msg, raw.log_time))
    return out


# ------------------------------------------------------------------------------- message codecs
def test_image_encodings_decode_to_rgb():
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full((5, 7), 9, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.zeros((5, 7), np.uint8)]),
    }
    for enc, arr in cases.items():
        out = decode.image_to_rgb(messages.image_msg(arr, enc, 1, "cam"))
        assert np.array_equal(out, rgb), enc
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    out = decode.image_to_rgb(messages.image_msg(grey, "mono8", 1, "cam"))
    assert out.shape == (5, 7, 3) and np.array_equal(out[..., 1], grey)
    # 16-bit, little and big endian, keep the high byte
    deep = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    assert np.array_equal(
        decode.image_to_rgb(messages.image_msg(deep, "mono16", 1, "cam"))[..., 0],
        (deep >> 8).astype(np.uint8),
    )
    big = messages.image_msg(deep.astype(">u2"), "mono16", 1, "cam")
    big.is_bigendian = 1
    assert np.array_equal(decode.image_to_array(big), deep)
    # Bayer and 4:2:2 values are checked against hand-written pixels in test_decode.py


def test_row_padding_and_bad_images():
    rgb = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    padded = np.zeros((4, 20), np.uint8)  # step 20 > 15 bytes of pixels
    padded[:, :15] = rgb.reshape(4, 15)
    msg = messages.image_msg(padded, "rgb8", 1, "c")
    msg.width, msg.step = 5, 20
    assert np.array_equal(decode.image_to_rgb(msg), rgb)
    msg.data = msg.data[:30]
    with pytest.raises(decode.ImageDecodeError, match="data has 30 bytes but step"):
        decode.image_to_rgb(msg)
    with pytest.raises(decode.ImageDecodeError, match="unsupported image encoding 'weird'"):
        decode.image_to_rgb(messages.image_msg(rgb, "weird", 1, "c"))
    bad = messages.compressed_msg(rgb, 1, "c")
    bad.data = np.frombuffer(b"not a jpeg", np.uint8)
    with pytest.raises(decode.ImageDecodeError, match="could not decode"):
        decode.compressed_to_rgb(bad)


def test_compressed_and_label_codecs():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, 8:] = (200, 30, 60)
    jpeg = messages.compressed_msg(rgb, 5, "c")
    assert jpeg.format.endswith("jpeg compressed bgr8")
    back = decode.compressed_to_rgb(jpeg).astype(int)
    assert np.abs(back - rgb).mean() < 4  # JPEG is lossy; the channel order must be right
    assert np.abs(back[:, 12:].mean(axis=(0, 1)) - (200, 30, 60)).max() < 5
    label = RNG.integers(0, 11, (6, 9), dtype=np.uint8)
    label_msg = messages.image_msg(label, "mono8", 1, "c")
    assert np.array_equal(decode.message_to_label(label_msg), label)
    png = messages.compressed_msg(label, 1, "c", fmt="png")
    assert np.array_equal(decode.message_to_label(png), label)
    with pytest.raises(decode.ImageDecodeError, match="lossless"):
        decode.message_to_label(messages.compressed_msg(label, 1, "c"))
    with pytest.raises(decode.ImageDecodeError, match="mono8"):
        decode.message_to_label(messages.image_msg(rgb, "rgb8", 1, "c"))


# ------------------------------------------------------------------------------- writing
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True])
def test_camera_bag_round_trip(tmp_path, storage, compressed):
    src = frames(5)
    opt = CameraBagOptions(rate=20.0, storage=storage, compressed=compressed, start_time=100.0)
    summary = write_camera_bag(src, tmp_path / "bag", opt)
    assert (summary.frames, summary.labels) == (5, 5)
    topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    assert set(summary.topics) == {topic, "/camera/camera_info", "/camera/labels"}
    got = read_all(tmp_path / "bag")
    stamps = [100_000_000_000 + i * 50_000_000 for i in range(5)]
    for t in (topic, "/camera/camera_info", "/camera/labels"):
        assert [s for s, _, _ in got[t]] == stamps, t
        assert [lt for _, _, lt in got[t]] == stamps, t  # bag time = header stamp
    for (_, img, _), (_, lab, _), f in zip(got[topic], got["/camera/labels"], src, strict=True):
        decoded = decode.message_to_rgb(img)
        if compressed:
            assert decoded.shape == f.rgb.shape
        else:
            assert np.array_equal(decoded, f.rgb)
        assert lab.encoding == "mono8" and np.array_equal(decode.message_to_label(lab), f.label)
    info = got["/camera/camera_info"][0][1]
    assert (info.width, info.height, info.header.frame_id) == (64, 48, "camera")


def test_make_bag_cli_images_and_labels(tmp_path, capsys):
    imgs, labs = tmp_path / "images", tmp_path / "labels"
    imgs.mkdir()
    labs.mkdir()
    src = frames(3, labels=True, seed=3)
    for i, f in zip((2, 0, 1), src, strict=True):  # file-name order, not creation order
        cv2.imwrite(str(imgs / f"frame_{i:03d}.png"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        lab = f.label.copy()
        lab[0, 0] = 11
        cv2.imwrite(str(labs / f"frame_{i:03d}.png"), lab)
    out = tmp_path / "bag"
    assert (
        make_bag.main(
            [
                "--images",
                str(imgs),
                "--labels",
                str(labs),
                "--out",
                str(out),
                "--rate",
                "5",
                "--storage",
                "sqlite3",
                "--void-label",
                "11",
            ]
        )
        == 0
    )
    assert "3 frames (3 labelled)" in capsys.readouterr().out
    got = read_all(out)
    order = [src[1], src[2], src[0]]  # frame_000, frame_001, frame_002
    for (_, img, _), (_, lab, _), f in zip(got["/camera/image_raw"], got["/camera/labels"], order, strict=True):
        assert np.array_equal(decode.image_to_rgb(img), f.rgb)
        lab = decode.message_to_label(lab)
        assert lab[0, 0] == 255 and np.array_equal(lab.reshape(-1)[1:], f.label.reshape(-1)[1:])
    assert np.diff([s for s, _, _ in got["/camera/image_raw"]]).tolist() == [200_000_000] * 2


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_make_bag_is_atomic(tmp_path, capsys):
    def broken():
        yield from frames(3)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_camera_bag(broken(), tmp_path / "bag")
    assert _leftovers(tmp_path) == []  # neither the bag nor its temp folder
    # a frame of another size mid-stream: clear error, nothing written
    bad = frames(2) + frames(1, h=32)
    with pytest.raises(BagWriteError, match="32 but earlier frames are 64x48"):
        write_camera_bag(bad, tmp_path / "bag")
    assert _leftovers(tmp_path) == []
    # an existing bag is never touched without overwrite
    write_camera_bag(frames(2), tmp_path / "bag")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "bag").iterdir()}
    with pytest.raises(BagWriteError, match="already exists"):
        write_camera_bag(frames(4), tmp_path / "bag")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "bag").iterdir()} == before
    write_camera_bag(frames(4), tmp_path / "bag", CameraBagOptions(overwrite=True))
    assert len(read_all(tmp_path / "bag")["/camera/image_raw"]) == 4
    assert _leftovers(tmp_path) == ["bag"]
    # CLI: an image without its label fails before a single byte lands
    imgs, labs = tmp_path / "i", tmp_path / "l"
    imgs.mkdir()
    labs.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(imgs / name), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(labs / "a.png"), np.zeros((8, 8), np.uint8))
    assert make_bag.main(["--images", str(imgs), "--labels", str(labs), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "b.png" in err and "nothing was written" in err
    assert not (tmp_path / "x").exists() and _leftovers(tmp_path) == ["bag", "i", "l"]


def test_writer_rejects_bad_destinations(tmp_path):
    with pytest.raises(BagWriteError, match="is a folder"):
        BagWriter(tmp_path / "x.mcap").open()
    with pytest.raises(BagWriteError, match="does not exist"):
        BagWriter(tmp_path / "missing" / "bag").open()
    with pytest.raises(BagWriteError, match="storage must be one of"):
        BagWriter(tmp_path / "b", storage="rosbag3")
    (tmp_path / "notabag").mkdir()
    (tmp_path / "notabag" / "keep.txt").write_text("precious")
    with pytest.raises(BagWriteError, match="not a rosbag2 bag"):
        BagWriter(tmp_path / "notabag", overwrite=True).open()


def test_make_bag_from_video(tmp_path, shared_data):
    video = shared_data / "driving_video" / "solidWhiteRight.mp4"
    out = tmp_path / "v"
    assert (
        make_bag.main(
            [
                "--video",
                str(video),
                "--out",
                str(out),
                "--every",
                "5",
                "--max-frames",
                "3",
                "--frame-size",
                "96x54",
                "--compressed",
            ]
        )
        == 0
    )
    got = read_all(out)["/camera/image_raw/compressed"]
    assert len(got) == 3
    assert decode.compressed_to_rgb(got[0][1]).shape == (54, 96, 3)
    assert np.diff([s for s, _, _ in got]).tolist() == [200_000_000] * 2  # 25 fps / 5


# ------------------------------------------------------------------------------- damaged bags
def _big_bag(path: Path, storage: str, n: int = 24) -> int:
    """Raw 128x128 frames: ~65 kB per frame, so an MCAP bag spans several 1 MB chunks; chunks
    uncompressed, as `ros2 bag record` writes them."""
    options = CameraBagOptions(storage=storage, compression="none")
    write_camera_bag(frames(n, 128, 128, labels=True), path, options)
    return n


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_yields_prefix_then_clear_error(tmp_path, storage):
    bag = tmp_path / "bag"
    n = _big_bag(bag, storage)
    f = _storage_file(bag)
    os.truncate(f, int(f.stat().st_size * 0.6))
    got, stamps = 0, []
    with BagReader(bag) as reader:
        with pytest.raises(BagReadError, match="truncated or corrupt") as info:
            for raw in reader.messages(["/camera/image_raw"]):
                stamps.append(messages.stamp_ns(reader.deserialize(raw)))
                got += 1
    assert 0 < got < n
    assert info.value.messages_read == got
    assert str(got) in str(info.value) and str(bag) in str(info.value)
    assert stamps == sorted(stamps) and stamps[0] == 1_700_000_000_000_000_000


def test_unfinished_mcap_and_garbage(tmp_path):
    bag = tmp_path / "bag"
    _big_bag(bag, "mcap", n=6)
    f = _storage_file(bag)
    data = f.read_bytes()
    # strip everything after the last chunk's message index: a recorder killed before the footer
    cut = data.rfind(b"\x0f")  # DataEnd record
    f.write_bytes(data[:cut])
    with BagReader(bag) as reader:
        with pytest.raises(BagReadError) as info:
            list(reader.messages(["/camera/image_raw"]))
    assert info.value.messages_read == 6 and "not closed cleanly" in str(info.value)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "junk.mcap").write_bytes(b"hello, not a bag")
    with BagReader(junk) as reader, pytest.raises(BagReadError, match="bad magic"):
        list(reader.messages())
    with pytest.raises(BagReadError, match="does not exist"):
        BagReader(tmp_path / "nope").open()


# ------------------------------------------------------------------------------- ROS 1
def test_ros1_bag_reads_and_converts(tmp_path):
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    Image, Header, Time = (
        ts.types["sensor_msgs/msg/Image"],
        ts.types["std_msgs/msg/Header"],
        ts.types["builtin_interfaces/msg/Time"],
    )
    rgb = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / "old.bag"
    with Writer1(path) as w:
        conn = w.add_connection("/cam/image", Image.__msgtype__, typestore=ts)
        for i in range(10):
            msg = Image(
                header=Header(seq=i, stamp=Time(sec=10 + i, nanosec=0), frame_id="cam"),
                height=32,
                width=32,
                encoding="bgr8",
                is_bigendian=0,
                step=96,
                data=rgb[..., ::-1].reshape(-1).copy(),
            )
            w.write(conn, (10 + i) * 10**9, ts.serialize_ros1(msg, Image.__msgtype__))
    with BagReader(path) as reader:
        assert reader.ros1 and reader.topics["/cam/image"].msgtype == messages.IMAGE
        raws = list(reader.messages())
        msg = reader.deserialize(raws[1])
        assert messages.stamp_ns(msg) == 11 * 10**9 and np.array_equal(decode.image_to_rgb(msg), rgb)
        ros2 = messages.typestore().deserialize_cdr(reader.to_cdr(raws[1]), messages.IMAGE)
        assert ros2.header.frame_id == "cam" and np.array_equal(decode.image_to_rgb(ros2), rgb)
    # a ROS 1 bag cut short (no index, half a chunk) still gives its first complete messages
    data = path.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    got = []
    with BagReader(cut) as reader:
        with pytest.raises(BagReadError, match="truncated or corrupt") as info:
            for raw in reader.messages():
                got.append(messages.stamp_ns(reader.deserialize(raw)))
    assert 0 < len(got) < 10 and info.value.messages_read == len(got)
    assert got == [(10 + i) * 10**9 for i in range(len(got))]


def test_make_bag_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "bevanet-make-bag"
    if not exe.exists():
        pytest.skip("bevanet-make-bag console script is not installed in this environment")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--compressed" in out.stdout
