"""bevanet_core.paths: the input/output overlap check and the one atomic write every writer uses."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bevanet_core.paths import atomic_write, file_mode, overlap

REPO = Path(__file__).resolve().parents[1]


def test_overlap_names_how_an_output_meets_an_input(tmp_path):
    data = tmp_path / "data"
    assert overlap(data, [data]) == f"it is the input {data}"
    assert overlap(data / "out.json", [data]) == f"it lies inside the input {data}"
    assert overlap(tmp_path, [data]) == f"it contains the input {data}"
    assert overlap(tmp_path / "report", [data]) is None


def test_atomic_write_replaces_the_file_with_the_umask_mode(tmp_path):
    path = tmp_path / "deep" / "out.txt"  # missing parents are made
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not path.exists()  # nothing at the final name until the rename
        Path(tmp).write_text("new")

    assert atomic_write(path, write) == path
    assert path.read_text() == "new"
    assert os.stat(path).st_mode & 0o777 == file_mode()
    assert Path(seen[0]).parent == path.parent and seen[0].endswith(".tmp")
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_atomic_write_keeps_the_old_file_and_no_temporary_when_writing_fails(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_gives_the_temporary_the_suffix_a_format_sniffing_writer_needs(tmp_path):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    image = np.full((4, 6, 3), 200, np.uint8)
    path = tmp_path / "frame.png"

    def write(tmp):
        assert cv2.imwrite(tmp, image), tmp  # cv2 picks the encoder from the name's suffix

    atomic_write(path, write, tmp_suffix=path.suffix)
    assert np.array_equal(cv2.imread(str(path)), image)


def test_the_package_writes_atomically_in_one_place():
    defs = []
    for path in sorted((REPO / "bevanet_core").rglob("*.py")):
        for match in re.finditer(r"^\s*def (atomic_write|_atomic\w*)\(", path.read_text(encoding="utf-8"), re.M):
            defs.append(f"{path.relative_to(REPO)}: {match.group(1)}")
    assert defs == ["bevanet_core/paths.py: atomic_write"]
