"""The layout: studies apart from benchmarks, each study named in studies/README.md with the
question it answered and where the answer is written; no module of the packages over 400 lines,
and the ROS package a thin shell over bevanet_core."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_study_has_its_line_in_the_studies_readme_and_nowhere_else():
    studies = sorted(p.name for p in (REPO / "studies").glob("*.py"))
    assert studies, "no study found"
    rows = re.findall(r"^\| `([\w.]+\.py)` \| (.+?) \| (.+?) \|$", (REPO / "studies" / "README.md").read_text(), re.M)
    assert sorted(name for name, _, _ in rows) == studies
    for name, question, where in rows:
        assert question.rstrip().endswith("?"), f"{name}: the question it answered"
        assert re.search(r"docs/\w+\.md|\.yaml|\.py", where), f"{name}: where the answer is written"
    assert not set(studies) & {p.name for p in (REPO / "benchmarks").glob("*.py")}


def test_benchmarks_hold_what_users_run():
    for path in (REPO / "benchmarks").glob("*.py"):
        first = path.read_text().split('"""')[1]
        assert "python benchmarks/" in first or "scripts/" in first, f"{path.name}: its docstring shows how to run it"


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_python_file_of_the_packages_is_over_400_lines():
    files = [path for package in ("bevanet_core", "bevanet_ros") for path in (REPO / package).rglob("*.py")]
    assert len(files) > 20, "the scan found no package code"
    over = {str(path.relative_to(REPO)): _lines(path) for path in files if _lines(path) > 400}
    assert over == {}, f"split these files (400 lines at most): {over}"


def test_the_ros_package_is_a_thin_shell_of_at_most_1000_lines():
    """bevanet_ros holds the ROS glue only (`wc -l bevanet_ros/*.py`); what needs no ROS lives in
    bevanet_core, where it is tested without ROS."""
    files = sorted((REPO / "bevanet_ros").glob("*.py"))
    assert REPO / "bevanet_ros" / "pipeline.py" in files, "the scan found no ROS package code"
    total = sum(_lines(path) for path in files)
    assert total <= 1000, f"bevanet_ros has {total} lines: move what needs no ROS into bevanet_core"
