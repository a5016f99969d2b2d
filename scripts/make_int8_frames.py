"""Writes the frames that int8 out of the box calibrates and checks on, from the shipped sample bag.

    python scripts/make_int8_frames.py        # -> bevanet_core/weights/int8_frames/{calibration,check}/

The JPEG payloads of `bags/solid_white_right` (480x270, a real highway drive; licence and
attribution in bags/README.md) are copied as they are, not re-encoded: every 4th frame from the
first, 24 of them, calibrate the int8 ranges, and 8 others (every 12th from the third, none of
them a calibration frame) are the check frames on which an int8 pipeline must agree with fp32
before backend 'auto' may choose it (bevanet_core/runtime/int8_auto.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bevanet_core.bags.reader import iter_messages  # noqa: E402

BAG = REPO / "bags" / "solid_white_right"
OUT = REPO / "bevanet_core" / "weights" / "int8_frames"
TOPIC = "/camera/image_raw/compressed"
CALIBRATION = list(range(0, 96, 4))  # 24 frames
CHECK = list(range(2, 98, 12))  # 8 frames, none of them in CALIBRATION


def main() -> int:
    assert not set(CALIBRATION) & set(CHECK)
    payloads = [bytes(msg.data) for _, msg in iter_messages(BAG, [TOPIC])]
    for name, indices in (("calibration", CALIBRATION), ("check", CHECK)):
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.jpg"):
            old.unlink()
        for i in indices:
            (folder / f"solid_white_right_{i:03d}.jpg").write_bytes(payloads[i])
        print(f"{folder}: {len(indices)} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
