"""Packs CamVid train/val small enough to travel to a lent GPU machine with the repository.

    python scripts/pack_camvid.py [--data ../shared/data/camvid] [--out .gpu_data/camvid] [--quality 95]

Images become JPEG (quality 95, optimised, progressive), labels stay PNG (maximum compression),
in the same layout and list files as the source, so the copy trains with `data.root=<out>`.
The whole carried tree (the repository's tracked files plus this copy) must stay under the
device tool's 64 MiB: the script prints the total and fails when it is over.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import cv2
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CARRY_LIMIT = 64 * 1024 * 1024


def tracked_bytes() -> int:
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], check=True, capture_output=True).stdout
    return sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file())


def pack(src: Path, out: Path, quality: int) -> int:
    total = 0
    for list_name in ("train.lst", "val.lst"):
        lines = []
        for line in (src / list_name).read_text().splitlines():
            if not line.strip():
                continue
            image_rel, label_rel = line.split()
            jpg_rel = str(Path(image_rel).with_suffix(".jpg"))
            for rel in (jpg_rel, label_rel):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.open(src / image_rel).convert("RGB").save(
                buf, "JPEG", quality=quality, optimize=True, progressive=True
            )
            (out / jpg_rel).write_bytes(buf.getvalue())
            label = cv2.imread(str(src / label_rel), cv2.IMREAD_UNCHANGED)
            if label is None:
                raise SystemExit(f"cannot read label {src / label_rel}")
            ok, png = cv2.imencode(".png", label, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            (out / label_rel).write_bytes(png.tobytes())
            total += buf.tell() + len(png)
            lines.append(f"{jpg_rel} {label_rel}")
        (out / list_name).write_text("\n".join(lines) + "\n")
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    p.add_argument("--out", type=Path, default=REPO / ".gpu_data" / "camvid")
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--no-size-check", action="store_true", help="skip the 64 MiB carry check (tests)")
    args = p.parse_args()
    if not (args.data / "train.lst").is_file():
        p.error(f"no CamVid at {args.data} (train.lst missing)")
    packed = pack(args.data, args.out, args.quality)
    print(f"packed {args.data} into {args.out}: {packed / 1e6:.1f} MB")
    if args.no_size_check:
        return 0
    total = packed + tracked_bytes()
    print(f"carry with the repository: {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f} MiB")
    if total > CARRY_LIMIT:
        print("over the carry limit: lower --quality", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
