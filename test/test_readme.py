"""The README is a user guide: its first screen shows the two commands and the four journeys,
the node's parameters are all in it, and the docs it links exist."""

from __future__ import annotations

import re
from pathlib import Path

from bevanet_core.serving.params import PARAMS, params_markdown

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_first_screen_has_the_two_commands_and_the_four_journeys():
    head = "\n".join(README.splitlines()[:60])
    assert "bash scripts/demo.sh" in head and "bash scripts/test.sh" in head
    for journey in (
        "Launch it on a camera",
        "Replay a bag for evaluation",
        "Watch it in RViz or Foxglove",
        "Train and deploy your own model",
    ):
        assert journey in head, journey


def test_the_test_command_is_what_ci_runs():
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_parameter_table_is_the_spec():
    assert params_markdown() in README
    for spec in PARAMS:
        assert f"| `{spec.name}` |" in README


def test_linked_docs_exist():
    links = set(re.findall(r"\]\((docs/[^)#]+)\)", README))
    assert {"docs/model.md", "docs/hostile-input.md"} <= links
    missing = [link for link in links if not (REPO / link).is_file()]
    assert not missing, missing


def test_class_colour_table_is_the_class_table():
    from bevanet_core.data.classes import CAMVID_CLASSES, CAMVID_PALETTE, classes_markdown

    table = classes_markdown()
    assert table in README
    for i, (name, (r, g, b)) in enumerate(zip(CAMVID_CLASSES, CAMVID_PALETTE, strict=True)):
        assert f"| {i} | {name} | ({r}, {g}, {b}) | `#{r:02x}{g:02x}{b:02x}` |" in table
    assert classes_markdown(["a"], [[1, 2, 255]]).splitlines()[2] == "| 0 | a | (1, 2, 255) | `#0102ff` |"
