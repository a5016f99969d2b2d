#!/usr/bin/env python3
"""Seeded hostile-input fuzz of the offline tools, under an address-space limit.

    python scripts/fuzz_hostile.py --messages 10000 --bags /tmp/corpus --weights w.safetensors \
        --as-limit-gb 4 --json fuzz.json

1. `--messages` malformed sensor_msgs/Image and CompressedImage messages (duck-typed, no ROS
   needed) through the one decoder (`serving.decode.message_to_rgb`): every one must either
   decode or raise `ImageDecodeError`; anything else is a crash.
2. With `--bags`, a corpus of broken bags (truncated, flipped bytes, missing metadata, empty
   storage, hostile frames) is written there and each bag goes through `bevanet-bag-eval`
   (its `main`, in this process): it must return an exit status (0, 1 or 2) and never raise.

The limit (RLIMIT_AS) applies to this whole process, so a decoder that tried to allocate a
bomb would fail here with MemoryError, which counts as a crash. Prints a JSON summary (also to
`--json`) and exits 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import shutil
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENCODINGS = [
    "rgb8",
    "bgr8",
    "mono8",
    "rgba8",
    "bgra8",
    "mono16",
    "rgb16",
    "yuv422",
    "yuyv",
    "bayer_rggb8",
    "8UC3",
    "16UC1",
]
BYTES_PER_PIXEL = {
    "rgb8": 3,
    "bgr8": 3,
    "mono8": 1,
    "rgba8": 4,
    "bgra8": 4,
    "mono16": 2,
    "rgb16": 6,
    "yuv422": 2,
    "yuyv": 2,
    "bayer_rggb8": 1,
    "8UC3": 3,
    "16UC1": 2,
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height RGB, with one tiny IDAT: a decompression bomb's
    header without its payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def jpeg_header_only(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 claiming width x height, then the end: no scan data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def good_jpeg(rng: random.Random) -> bytes:
    from PIL import Image

    w, h = rng.randint(8, 48), rng.randint(8, 48)
    arr = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 256, (h, w, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG" if rng.random() < 0.5 else "PNG")
    return buf.getvalue()


def raw_message(rng: random.Random) -> SimpleNamespace:
    enc = rng.choice(ENCODINGS)
    w, h = rng.randint(1, 40), rng.randint(1, 30)
    if enc in ("yuv422", "yuyv"):
        w += w % 2
    step = w * BYTES_PER_PIXEL[enc]
    msg = SimpleNamespace(
        encoding=enc,
        height=h,
        width=w,
        step=step,
        is_bigendian=0,
        data=bytes(rng.getrandbits(8) for _ in range(step * h)),
    )
    kind = rng.randrange(14)
    if kind == 0:
        msg.encoding = rng.choice(["", "rgb32", "32FC1", "RGB8 ", "jpeg", "\x00", "x" * 300, None, 7])
    elif kind == 1:
        msg.step = rng.choice([0, -1, step - 1, 2**63, -(2**31)])
    elif kind == 2:
        msg.data = msg.data[: rng.randint(0, max(0, len(msg.data) - 1))]
    elif kind == 3:
        msg.data = msg.data + bytes(rng.randint(1, 99))
    elif kind == 4:
        msg.height, msg.width = rng.choice([(0, w), (h, 0), (0, 0), (-1, w), (h, -5)])
    elif kind == 5:  # huge claimed size, tiny data
        msg.height, msg.width = rng.choice(
            [(100000, 100000), (2**31 - 1, 2**31 - 1), (1, 2**40), (6000, 8000), (65535, 65535)]
        )
        msg.step = msg.width * 3
    elif kind == 6:
        msg.encoding, msg.width, msg.step = "yuyv", 2 * rng.randint(1, 20) + 1, None
        msg.step = msg.width * 2
        msg.data = bytes(msg.step * msg.height)
    elif kind == 7:  # data that is not bytes
        msg.data = rng.choice(["not bytes", [300, -1, 5], None, 3.5, [[1, 2], [3]], object()])
    elif kind == 8:  # fields of the wrong type
        setattr(msg, rng.choice(["height", "width", "step"]), rng.choice(["12", None, 1.5, [], "x"]))
    elif kind == 9:
        msg.is_bigendian = rng.choice([2, -1, "yes", None])
    elif kind == 10:
        del msg.data
    elif kind == 11:  # step enormous but consistent with the data: must be refused by size
        msg.step = step * 1000
        msg.data = b""
    # 12, 13: left valid, so decoding and refusing are both exercised
    return msg


def compressed_message(rng: random.Random) -> SimpleNamespace:
    fmt = rng.choice(["jpeg", "png", "rgb8; jpeg compressed bgr8", "bmp", "", "tiff"])
    kind = rng.randrange(10)
    if kind == 0:
        data = good_jpeg(rng)
        data = data[: rng.randint(0, len(data) // 2)]
    elif kind == 1:
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
    elif kind == 2:
        data = png_header_only(rng.choice([20000, 65535, 2**31 - 1, 9000]), rng.choice([20000, 9000, 1]))
    elif kind == 3:
        data = jpeg_header_only(rng.choice([65535, 20000, 9000]), rng.choice([65535, 20000, 8000]))
    elif kind == 4:  # flipped bytes in a good image's header
        data = bytearray(good_jpeg(rng))
        for _ in range(rng.randint(1, 20)):
            data[rng.randint(0, min(60, len(data) - 1))] = rng.getrandbits(8)
        data = bytes(data)
    elif kind == 5:
        data = b""
    elif kind == 6:  # other formats' headers claiming huge sizes (Pillow's lazy open)
        data = rng.choice(
            [
                b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHH", 40, 60000, 60000, 1, 24) + bytes(24),
                b"P6\n60000 60000\n255\n" + bytes(16),
                b"GIF89a" + struct.pack("<HH", 65535, 65535) + bytes(8),
            ]
        )
    elif kind == 7:
        data = rng.choice(["text", None, [1, 2, 3], 12])
    else:  # valid
        data = good_jpeg(rng)
    return SimpleNamespace(format=fmt, data=data)


def fuzz_messages(n: int, seed: int) -> dict:
    from bevanet_core.serving.decode import ImageDecodeError, message_to_rgb

    rng = random.Random(seed)
    decoded = refused = 0
    kinds: dict[str, int] = {}
    crashes: list[str] = []
    t0 = time.perf_counter()
    for i in range(n):
        msg = compressed_message(rng) if i % 2 else raw_message(rng)
        try:
            rgb = message_to_rgb(msg)
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
            decoded += 1
        except ImageDecodeError as err:
            refused += 1
            kinds[err.kind] = kinds.get(err.kind, 0) + 1
        except BaseException as err:  # noqa: BLE001 - anything else is what the fuzz looks for
            crashes.append(f"message {i}: {type(err).__name__}: {str(err)[:200]}")
    return {
        "messages": n,
        "decoded": decoded,
        "refused": refused,
        "refused_by_kind": kinds,
        "crashes": len(crashes),
        "crash_examples": crashes[:10],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


# ------------------------------------------------------------------------------ broken bags
def _good_bag(path: Path, frames: int, seed: int, size: int = 96) -> None:
    from bevanet_core.bags.writer import CameraBagOptions, Frame, write_camera_bag

    rng = np.random.default_rng(seed)
    write_camera_bag(
        [
            Frame(
                rng.integers(0, 256, (size, size, 3), np.uint8),
                rng.integers(0, 11, (size, size), np.uint8),
            )
            for _ in range(frames)
        ],
        path,
        # uncompressed chunks, as `ros2 bag record` writes them: a cut inside a chunk keeps the
        # messages before the cut, which a truncated recording is read up to
        CameraBagOptions(rate=10.0, compression="none"),
    )


def _hostile_frames_bag(path: Path) -> None:
    from bevanet_core.bags import messages
    from bevanet_core.bags.writer import BagWriter

    rgb = np.zeros((16, 16, 3), np.uint8)
    with BagWriter(path) as w:
        w.add_topic("/cam", messages.IMAGE)
        w.write("/cam", 1, messages.image_msg(rgb, "rgb8", 1, "c"))
        w.write("/cam", 2, messages.image_msg(np.zeros((0, 0, 3), np.uint8), "rgb8", 2, "c"))
        w.write("/cam", 3, messages.image_msg(np.zeros((16, 15, 2), np.uint8), "yuv422", 3, "c"))
        w.write("/cam", 4, messages.image_msg(rgb, "mystery32", 4, "c"))
        big = messages.image_msg(rgb, "rgb8", 5, "c")
        big.height, big.width, big.step = 100000, 100000, 300000
        w.write("/cam", 5, big)
        w.write("/cam", 6, messages.image_msg(rgb, "rgb8", 6, "c"))


def _hostile_compressed_bag(path: Path) -> None:
    from bevanet_core.bags import messages
    from bevanet_core.bags.writer import BagWriter

    store = messages.typestore()
    make = store.types[messages.COMPRESSED_IMAGE]
    with BagWriter(path) as w:
        w.add_topic("/cam/compressed", messages.COMPRESSED_IMAGE)
        payloads = [
            png_header_only(20000, 20000),
            jpeg_header_only(65535, 65535),
            b"",
            b"\xff\xd8garbage",
            good_jpeg(random.Random(1)),
        ]
        for i, data in enumerate(payloads):
            msg = make(
                header=messages.header(i + 1, "c"),
                format="png",
                data=np.frombuffer(data, np.uint8),
            )
            w.write("/cam/compressed", i + 1, msg)


def build_corpus(root: Path, seed: int) -> list[tuple[Path, str]]:
    """Broken bags under `root` (recreated), with their camera topic: each is one way a recorder
    or a disk fails."""
    rng = random.Random(seed)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    bags = []

    def fresh(name: str, frames: int = 12) -> Path:
        path = root / name
        _good_bag(path, frames, rng.randint(0, 2**31))
        return path

    def storage(bag: Path) -> Path:
        return next(bag.glob("*.mcap"))

    for fraction in (0.05, 0.5, 0.97):
        bag = fresh(f"truncated_{int(fraction * 100)}")
        f = storage(bag)
        os.truncate(f, int(f.stat().st_size * fraction))
        bags.append(bag)
    for k in range(3):
        bag = fresh(f"flipped_{k}")
        f = storage(bag)
        data = bytearray(f.read_bytes())
        for _ in range(rng.choice([1, 16, 256])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        f.write_bytes(bytes(data))
        bags.append(bag)
    bag = fresh("no_metadata")
    (bag / "metadata.yaml").unlink()
    bags.append(bag)
    bag = fresh("garbage_metadata")
    (bag / "metadata.yaml").write_text("{{{ not: yaml: [")
    bags.append(bag)
    bag = fresh("empty_storage")
    storage(bag).write_bytes(b"")
    bags.append(bag)
    bag = root / "random_file.mcap"
    bag.write_bytes(bytes(rng.getrandbits(8) for _ in range(4096)))
    bags.append(bag)
    bag = root / "not_a_bag"
    bag.mkdir()
    (bag / "readme.txt").write_text("nothing here")
    bags.append(bag)
    camera = [(bag, "/camera/image_raw") for bag in bags]
    _hostile_frames_bag(root / "hostile_frames")
    _hostile_compressed_bag(root / "hostile_compressed")
    return camera + [
        (root / "hostile_frames", "/cam"),
        (root / "hostile_compressed", "/cam/compressed"),
    ]


def fuzz_bags(root: Path, weights: str | None, seed: int) -> dict:
    from bevanet_core.cli import bag_eval

    bags = build_corpus(root, seed)
    results, crashes = [], []
    t0 = time.perf_counter()
    for bag, topic in bags:
        argv = [
            str(bag),
            "--image-topic",
            topic,
            "--threads",
            "1",
            "--json",
            str(root / f"{bag.name}.report.json"),
        ]
        if topic == "/camera/image_raw":  # the recorded ones carry labels, paired by stamp
            argv += ["--out-bag", str(root / f"{bag.name}.segmented")]
        else:
            argv += ["--label-topic", "none"]
        if weights:
            argv += ["--weights", weights]
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = bag_eval.main(argv)
        except SystemExit as exc:  # argparse refusals exit 2: an answer, not a crash
            code = exc.code
        except BaseException as exc:  # noqa: BLE001
            code = None
            crashes.append(
                f"{bag.name}: {type(exc).__name__}: {str(exc)[:200]} at {traceback.extract_tb(exc.__traceback__)[-1]}"
            )
        text = err.getvalue()
        results.append(
            {
                "bag": bag.name,
                "exit": code,
                "traceback": "Traceback" in text,
                "stderr_tail": text.strip().splitlines()[-1][:200] if text.strip() else "",
            }
        )
        if "Traceback" in text:
            crashes.append(f"{bag.name}: a traceback was printed")
    return {
        "bags": results,
        "crashes": len(crashes),
        "crash_examples": crashes[:10],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10000, help="malformed messages to decode")
    p.add_argument("--bags", type=Path, default=None, help="folder for the broken-bag corpus")
    p.add_argument("--weights", default=None, help="model for bevanet-bag-eval (default shipped)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--as-limit-gb", type=float, default=4.0, help="RLIMIT_AS; 0: none")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.as_limit_gb > 0:
        limit = int(args.as_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    summary: dict = {"seed": args.seed, "as_limit_gb": args.as_limit_gb}
    summary["decoder"] = fuzz_messages(args.messages, args.seed)
    if args.bags is not None:
        summary["bag_eval"] = fuzz_bags(args.bags, args.weights, args.seed)
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    crashed = summary["decoder"]["crashes"] + summary.get("bag_eval", {}).get("crashes", 0)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
