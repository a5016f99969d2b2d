#!/usr/bin/env python3
"""Writes the Python API names registered by TensorRT's bindings, for test/test_tensorrt_api.py.

    python scripts/tensorrt_api_names.py WHEEL [WHEEL ...]
    # wheels: pip download --no-deps --only-binary=:all: "tensorrt-cu12-bindings<11" \
    #         tensorrt-cu13-bindings -d wheels/

TensorRT itself cannot be installed without NVIDIA's own index (the PyPI `-libs` wheels only
point there), and the bindings wheels do not import without libnvinfer. Their pybind11 module
still holds every class, enum member, method and property name as a NUL-terminated string; this
script keeps the strings that are Python identifiers, one per line, into
test/data/tensorrt_api/tensorrt-<version>.txt. The linker may store a short name only as the
tail of a longer one (`Logger` inside `ILogger`), which the test accounts for.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "test" / "data" / "tensorrt_api"
NAME = re.compile(rb"^[A-Za-z_][A-Za-z0-9_]*$")


def names_of(wheel: Path) -> tuple[str, list[str]]:
    """(TensorRT version, sorted identifier strings of the wheel's extension module)."""
    match = re.match(r"tensorrt_cu\d+_bindings-([0-9.]+)-", wheel.name)
    if not match:
        raise SystemExit(f"{wheel}: not a tensorrt-cuXX-bindings wheel")
    with zipfile.ZipFile(wheel) as z:
        so = [n for n in z.namelist() if n.endswith(".so") and "tensorrt" in n]
        if not so:
            raise SystemExit(f"{wheel}: no tensorrt extension module inside")
        data = z.read(so[0])
    found = set()
    for chunk in data.split(b"\0"):
        if 2 <= len(chunk) <= 80 and NAME.match(chunk):
            found.add(chunk.decode())
    return match.group(1), sorted(found)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for arg in argv:
        version, names = names_of(Path(arg))
        path = OUT / f"tensorrt-{version}.txt"
        path.write_text("\n".join(names) + "\n")
        print(f"{path}: {len(names)} names from {Path(arg).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
