"""The standard argument failures of every bevanet-* command, table-driven: a path that does not
exist, a file where a folder is needed and a folder where a file is, negative numbers and absurd
values. Each must be refused up front (before a model is loaded or a frame read) with exit
status 2 (the demo: 1 for a missing bag) and one error line that names the problem, never a
traceback."""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# console script -> module whose main() it runs (bevanet_ros.tools wraps the last two, adding
# only the ROS client)
COMMANDS = {
    "bevanet-predict": "bevanet_core.cli.predict",
    "bevanet-eval": "bevanet_core.cli.evaluate",
    "bevanet-pseudo-label": "bevanet_core.cli.pseudo_label",
    "bevanet-bag-eval": "bevanet_core.cli.bag_eval",
    "bevanet-make-bag": "bevanet_core.cli.make_bag",
    "bevanet-export": "bevanet_core.cli.export",
    "bevanet-demo": "bevanet_core.cli.demo",
    "bevanet-bench": "bevanet_core.cli.bench",
    "bevanet-speed": "bevanet_core.cli.speed",
    "bevanet-train": "bevanet_core.cli.train",
    "bevanet-pretrain": "bevanet_core.cli.pretrain",
    "bevanet-calibrate": "bevanet_core.cli.calibrate",
    "bevanet-mine": "bevanet_core.cli.mine",
    "bevanet-finetune-data": "bevanet_core.cli.finetune_data",
    "bevanet-rviz-config": "bevanet_core.cli.rviz_config",
}

# (command, arguments with MISSING / FILE / DIR placeholders, what the error line must say)
CASES = [
    ("bevanet-predict", ["MISSING"], "not found"),
    ("bevanet-predict", ["DIR", "--out", "FILE"], "not a folder"),
    ("bevanet-predict", ["DIR", "--alpha", "2"], "--alpha"),
    ("bevanet-predict", ["DIR", "--max-frames", "-1"], "--max-frames"),
    ("bevanet-predict", ["DIR", "--threads", "-1"], "--threads"),
    ("bevanet-predict", ["DIR", "--max-pixels", "0"], "--max-pixels"),
    ("bevanet-eval", ["--dataset", "camvid", "--root", "MISSING"], "does not exist"),
    ("bevanet-eval", ["--dataset", "camvid", "--root", "DIR", "--tta", "--tta-scales", "-1"], "--tta-scales"),
    ("bevanet-pseudo-label", ["MISSING", "--out", "DIR"], "not found"),
    ("bevanet-pseudo-label", ["DIR", "--out", "FILE"], "not a folder"),
    ("bevanet-pseudo-label", ["DIR", "--out", "DIR", "--threshold", "2"], "--threshold"),
    ("bevanet-pseudo-label", ["DIR", "--out", "DIR", "--every", "0"], "--every"),
    ("bevanet-eval", ["--dataset", "camvid", "--root", "FILE"], "is a file"),
    ("bevanet-eval", ["--dataset", "camvid", "--root", "DIR", "--json", "DIR"], "is a folder"),
    ("bevanet-eval", ["--dataset", "camvid", "--root", "DIR", "--max-frames", "-3"], "--max-frames"),
    (
        "bevanet-eval",
        ["--dataset", "camvid", "--root", "DIR", "--list", "nope.lst"],
        "does not exist",
    ),
    ("bevanet-bag-eval", ["MISSING"], "not found"),
    ("bevanet-bag-eval", ["DIR", "--json", "DIR"], "is a folder"),
    ("bevanet-bag-eval", ["DIR", "--max-frames", "0"], "--max-frames"),
    ("bevanet-bag-eval", ["DIR", "--stamp-tolerance-ms", "-1"], "--stamp-tolerance-ms"),
    ("bevanet-bag-eval", ["DIR", "--node-timeout", "0"], "--node-timeout"),
    ("bevanet-bag-eval", ["DIR", "--image-topic", "bad topic"], "topic name"),
    ("bevanet-bag-eval", ["DIR", "--out-bag", "DIR"], "would destroy an input bag"),
    ("bevanet-bag-eval", ["DIR", "--threads", "0"], "--threads"),
    ("bevanet-make-bag", ["--images", "MISSING", "--out", "NEW"], "does not exist"),
    ("bevanet-make-bag", ["--images", "FILE", "--out", "NEW"], "is a file"),
    ("bevanet-make-bag", ["--video", "DIR", "--out", "NEW"], "is a folder"),
    ("bevanet-make-bag", ["--images", "DIR", "--out", "FILE"], "not a folder"),
    ("bevanet-make-bag", ["--images", "DIR", "--out", "NEW", "--every", "-1"], "--every"),
    ("bevanet-make-bag", ["--images", "DIR", "--out", "NEW", "--rate", "1e308"], "--rate"),
    (
        "bevanet-make-bag",
        ["--images", "DIR", "--out", "NEW", "--jpeg-quality", "1000"],
        "--jpeg-quality",
    ),
    ("bevanet-make-bag", ["--images", "DIR", "--out", "NEW", "--frame-size", "-4x3"], "--frame-size"),
    ("bevanet-export", ["--weights", "MISSING", "--onnx", "NEW.onnx"], "not found"),
    ("bevanet-export", ["--weights", "DIR", "--onnx", "NEW.onnx"], "not found"),
    ("bevanet-export", ["--onnx", "DIR", "--input-size", "480x360"], "is a folder"),
    ("bevanet-export", ["--onnx", "NEW.onnx", "--batch", "-1"], "--batch"),
    ("bevanet-export", ["--onnx", "NEW.onnx", "--opset", "99999"], "--opset"),
    ("bevanet-export", ["--onnx", "NEW.onnx", "--workspace-gib", "-1"], "--workspace-gib"),
    ("bevanet-demo", ["--bag", "MISSING"], "does not exist"),
    ("bevanet-demo", ["--max-frames", "-5"], "--max-frames"),
    ("bevanet-demo", ["--node-timeout", "-1"], "--node-timeout"),
    ("bevanet-demo", ["--bag", "DIR", "--weights", "FILE", "--out", "FILE"], "not a folder"),
    ("bevanet-bench", ["--runs", "0"], "--runs"),
    ("bevanet-bench", ["--batch", "-1"], "--batch"),
    ("bevanet-bench", ["--weights", "MISSING"], "does not exist"),
    ("bevanet-bench", ["--json", "DIR"], "is a folder"),
    ("bevanet-speed", ["--runs", "-1"], "--runs"),
    ("bevanet-speed", ["--threads", "0"], "--threads"),
    ("bevanet-speed", ["--weights", "MISSING"], "does not exist"),
    ("bevanet-speed", ["--json", "DIR"], "is a folder"),
    ("bevanet-train", ["--config", "MISSING"], "not found"),
    ("bevanet-train", ["--root", "MISSING"], "does not exist"),
    ("bevanet-train", ["--root", "FILE"], "is a file"),
    ("bevanet-train", ["--root", "DIR", "--out", "FILE"], "not a folder"),
    ("bevanet-pretrain", ["--train", "MISSING"], "not found"),
    ("bevanet-pretrain", ["--train", "FILE"], "not found"),
    (
        "bevanet-make-bag",
        ["--dataset", "camvid", "--root", "DIR", "--list", "nope.lst", "--out", "NEW"],
        "neither here nor in --root",
    ),
    ("bevanet-calibrate", ["--dataset", "camvid", "--root", "MISSING", "--split", "val"], "does not exist"),
    ("bevanet-calibrate", ["--dataset", "camvid", "--root", "DIR", "--split", "val", "--json", "DIR"], "is a folder"),
    ("bevanet-calibrate", ["--dataset", "camvid", "--root", "DIR"], "--split NAME or --list FILE"),
    (
        "bevanet-calibrate",
        ["--dataset", "camvid", "--root", "DIR", "--split", "val", "--max-frames", "-3"],
        "--max-frames",
    ),
    ("bevanet-calibrate", ["--dataset", "camvid", "--root", "DIR", "--split", "val", "--write"], "--write needs"),
    ("bevanet-mine", ["MISSING", "--count", "3", "--out", "NEW"], "does not exist"),
    ("bevanet-mine", ["DIR", "--count", "0", "--out", "NEW"], "--count"),
    ("bevanet-mine", ["DIR", "--count", "3", "--out", "FILE"], "not a folder"),
    ("bevanet-finetune-data", ["--mined", "MISSING", "--labels", "DIR", "--out", "NEW"], "does not exist"),
    ("bevanet-finetune-data", ["--mined", "DIR", "--labels", "DIR", "--out", "NEW", "--repeat", "0"], "--repeat"),
    ("bevanet-finetune-data", ["--mined", "DIR", "--labels", "DIR", "--out", "NEW"], "classes.json is missing"),
    ("bevanet-rviz-config", ["--out", "DIR"], "is a folder"),
    ("bevanet-rviz-config", ["namespace:=perception", "camera_topic:=/a"], "no argument 'camera_topic'"),
    ("bevanet-rviz-config", ["params_file:=MISSING"], "does not exist"),
]


def test_every_console_script_is_in_the_table():
    scripts = set(re.findall(r'"(bevanet-[a-z-]+) = ', (REPO / "setup.py").read_text()))
    assert scripts == set(COMMANDS) == {c for c, _, _ in CASES}


@pytest.mark.parametrize("command, argv, expected", CASES, ids=[f"{c}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_arguments_fail_fast_in_one_line(command, argv, expected, tmp_path, capsys):
    (tmp_path / "a_file.txt").write_text("not what was asked for")
    (tmp_path / "a_dir").mkdir()
    subs = {
        "MISSING": str(tmp_path / "missing"),
        "FILE": str(tmp_path / "a_file.txt"),
        "DIR": str(tmp_path / "a_dir"),
        "NEW": str(tmp_path / "new"),
    }
    args = [subs.get(a, a.replace("NEW", subs["NEW"])) for a in argv]
    main = importlib.import_module(COMMANDS[command]).main
    t0 = time.perf_counter()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    wall = time.perf_counter() - t0
    out = capsys.readouterr()
    text = out.err + out.out
    assert "Traceback" not in text, text
    assert code == (1 if command == "bevanet-demo" and "MISSING" in argv else 2), text
    errors = [
        line for line in text.splitlines() if "error" in line.lower() or "does not exist" in line or "not found" in line
    ]
    assert len(errors) == 1, text
    assert expected in errors[0], errors[0]
    assert wall < 20.0, f"{command} took {wall:.1f} s to refuse {argv}"
