"""One vocabulary across the bevanet-* tools: every tool's parser is built from
bevanet_core.cli.args, one concept has one option name (its former spellings parse, hidden from
--help), one name has one meaning, every option has a description, and every --help shows each
option's default.

`bag_player` (ros2 run bevanet_ros bag_player) is left out on purpose: it keeps the option
names of `ros2 bag play`, which it stands in for."""

from __future__ import annotations

import argparse
import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest
from test_cli_arguments import COMMANDS

from bevanet_core.cli import args as vocabulary

REPO = Path(__file__).resolve().parents[1]
# console script -> module whose build_parser() it uses: the modules the console scripts run,
# but bevanet-bag-eval's parser lives apart from its main()
TOOLS = {**COMMANDS, "bevanet-bag-eval": "bevanet_core.cli.bag_eval_args"}


def parser_of(tool: str) -> argparse.ArgumentParser:
    return importlib.import_module(TOOLS[tool]).build_parser()


def options_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def hidden_of(action: argparse.Action) -> tuple[str, ...]:
    return tuple(getattr(action, "hidden_aliases", ()))


def visible_of(action: argparse.Action) -> list[str]:
    return [s for s in action.option_strings if s not in hidden_of(action)]


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return {tool: parser_of(tool) for tool in TOOLS}


def vocabulary_problems(parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Every way the tools' options break the one vocabulary, one line each."""
    problems = []
    spellings = defaultdict(set)  # dest -> {(all option strings of the action)}
    meanings = defaultdict(set)  # option string -> {dest}
    users = defaultdict(set)  # visible option string -> {tool}
    for tool, parser in parsers.items():
        for action in options_of(parser):
            names = tuple(visible_of(action))
            spellings[action.dest].add((names, tuple(sorted(s for s in hidden_of(action) if s in vocabulary.ALIASES))))
            for s in names:
                meanings[s].add(action.dest)
                users[s].add(tool)
                if s in vocabulary.ALIASES:
                    problems.append(f"{tool}: {s} is the former spelling of {vocabulary.ALIASES[s]}, not a name")
            for s in hidden_of(action):
                if s in vocabulary.ALIASES:
                    if vocabulary.ALIASES[s] != names[0]:
                        problems.append(f"{tool}: {s} stands for {vocabulary.ALIASES[s]}, not {names[0]}")
                elif vocabulary.LEGACY.get((tool, s)) != action.dest:
                    problems.append(f"{tool}: hidden {s} is neither in args.ALIASES nor in args.LEGACY")
            option = vocabulary.OPTIONS.get(action.dest)
            if option is not None and names[0] == option.flag:
                if getattr(action, "vocabulary", None) != action.dest:
                    problems.append(f"{tool}: {option.flag} is defined in the tool instead of args.OPTIONS")
                elif not option.varies and action.default != option.default:
                    problems.append(f"{tool}: {option.flag} defaults to {action.default!r}, not {option.default!r}")
    for dest, names in spellings.items():
        if len(names) > 1:
            problems.append(f"'{dest}' is spelt differently across the tools: {sorted(names)}")
    for name, dests in meanings.items():
        if len(dests) > 1:
            problems.append(f"{name} means different things across the tools: {sorted(dests)}")
    for name, tools in users.items():
        actions = [a for t in tools for a in options_of(parsers[t]) if name in a.option_strings]
        if len(tools) > 1 and not all(getattr(a, "vocabulary", None) for a in actions):
            problems.append(f"{name} is used by {', '.join(sorted(tools))} but not defined once in args.OPTIONS")
    return problems


def test_every_console_script_is_compared():
    scripts = set(re.findall(r'"(bevanet-[a-z-]+) = ', (REPO / "setup.py").read_text()))
    assert scripts == set(TOOLS)


def test_every_tool_builds_its_parser_from_the_vocabulary(parsers):
    for tool, parser in parsers.items():
        assert isinstance(parser, vocabulary.ToolParser), tool
        assert parser.prog == tool
        assert parser.formatter_class is vocabulary.ToolFormatter, tool
        assert any(getattr(a, "vocabulary", None) for a in options_of(parser)), tool


def test_one_concept_one_name_one_meaning(parsers):
    assert vocabulary_problems(parsers) == []


def test_the_comparison_fails_on_a_renamed_option(parsers):
    """A tool that names a shared concept its own way, or takes a former spelling as its name,
    is caught."""
    renamed = dict(parsers)
    p = vocabulary.make_parser("bevanet-x", "x")
    p.add_argument("--limit", dest="max_frames", type=int, help="stop after N frames (default: all)")
    renamed["bevanet-x"] = p
    problems = vocabulary_problems(renamed)
    assert any("former spelling of --max-frames" in line for line in problems), problems
    assert any("'max_frames' is spelt differently" in line for line in problems), problems
    p = vocabulary.make_parser("bevanet-y", "y")
    p.add_argument("--json", dest="report", help="report file (default: none)")
    problems = vocabulary_problems({**parsers, "bevanet-y": p})
    assert any("--json means different things" in line for line in problems), problems
    p = vocabulary.make_parser("bevanet-z", "z")
    p.add_argument("--every", type=int, default=2, help="every N-th frame")
    problems = vocabulary_problems({**parsers, "bevanet-z": p})
    assert any("--every is used by" in line for line in problems), problems


def test_every_option_has_a_description_and_shows_its_default(parsers):
    for tool, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, f"{tool} {name}: no description"
            assert len(action.help) > 8, f"{tool} {name}: {action.help!r} describes nothing"
            if not action.option_strings or action.required or action.nargs == 0:
                continue  # positionals, required options and flags have no default to show
            shown = formatter._expand_help(action)
            assert "default" in shown, f"{tool} {name}: --help does not show the default: {shown!r}"


def test_help_shows_names_only_and_hides_former_spellings(parsers):
    for tool, parser in parsers.items():
        text = parser.format_help()
        for action in options_of(parser):
            for hidden in hidden_of(action):
                assert not re.search(rf"(?<![\w-]){re.escape(hidden)}(?![\w-])", text), f"{tool} shows {hidden}"
        assert "(default: None)" not in text, tool


@pytest.mark.parametrize(
    "tool, argv, dest, value",
    [
        ("bevanet-export", ["--onnx", "m.onnx", "--size", "480x360"], "input_size", "480x360"),
        ("bevanet-bench", ["--size", "64x64"], "input_size", "64x64"),
        ("bevanet-speed", ["--size", "64x64"], "input_size", "64x64"),
        ("bevanet-eval", ["--dataset", "camvid", "--root", "r", "--limit", "3"], "max_frames", 3),
        ("bevanet-calibrate", ["--dataset", "camvid", "--root", "r", "--limit", "3"], "max_frames", 3),
        ("bevanet-pseudo-label", ["a.png", "--out", "o", "--limit", "3"], "max_frames", 3),
        ("bevanet-bag-eval", ["bag", "--dataset-root", "r", "--list", "l"], "root", Path("r")),
        ("bevanet-bag-eval", ["bag", "--out-format", "sqlite3"], "storage", "sqlite3"),
        ("bevanet-bag-eval", ["bag", "--video", "v.mp4"], "overlay_video", Path("v.mp4")),
        ("bevanet-train", ["--data-root", "r", "--out-dir", "o"], "out", Path("o")),
        ("bevanet-train", ["--data-root", "r"], "root", Path("r")),
        ("bevanet-pretrain", ["--train", "t", "--out-dir", "o", "--batch-size", "8"], "batch", 8),
        ("bevanet-make-bag", ["--images", "i", "--out", "o", "--format", "sqlite3"], "storage", "sqlite3"),
        ("bevanet-make-bag", ["--images", "i", "--out", "o", "--resize", "480x270"], "frame_size", "480x270"),
        ("bevanet-make-bag", ["--images", "i", "--out", "o", "--topic", "/cam/image"], "image_topic", "/cam/image"),
    ],
)
def test_former_spellings_still_parse(tool, argv, dest, value):
    assert getattr(parser_of(tool).parse_args(argv), dest) == value


@pytest.mark.parametrize(
    "argv, bags, port",
    [
        (["--foxglove", "bags/x"], ["bags/x"], vocabulary.FOXGLOVE_PORT),
        (["bags/x", "--foxglove"], ["bags/x"], vocabulary.FOXGLOVE_PORT),
        (["--foxglove", "9000", "bags/x", "bags/y"], ["bags/x", "bags/y"], 9000),
        (["--foxglove=0", "bags/x"], ["bags/x"], 0),
        (["bags/x"], ["bags/x"], None),
    ],
)
def test_bag_eval_foxglove_takes_a_port_or_none_before_the_bags(argv, bags, port):
    args = parser_of("bevanet-bag-eval").parse_args(argv)
    assert args.bags == [Path(b) for b in bags] and args.foxglove == port


def test_a_port_out_of_range_is_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exc:
        parser_of("bevanet-bag-eval").parse_args(["--foxglove", "70000", "bags/x"])
    assert exc.value.code == 2
    assert "--foxglove" in capsys.readouterr().err


def test_the_vocabulary_constants_match_their_sources():
    from bevanet_core.bags.results import DEFAULT_LABEL_TOPIC
    from bevanet_core.serving.foxglove_view import DEFAULT_PORT

    assert vocabulary.FOXGLOVE_PORT == DEFAULT_PORT and vocabulary.LABEL_TOPIC == DEFAULT_LABEL_TOPIC
    assert not set(vocabulary.ALIASES) & {o.flag for o in vocabulary.OPTIONS.values()}
    assert not {s for _, s in vocabulary.LEGACY} & set(vocabulary.ALIASES)


def test_a_tool_cannot_give_a_shared_option_its_own_default():
    p = vocabulary.make_parser("bevanet-x", "x")
    with pytest.raises(TypeError, match="--max-frames has one default"):
        vocabulary.add(p, "max_frames", default=5)


def test_every_tool_defaults_to_the_shipped_model(parsers):
    for tool, parser in parsers.items():
        weights = [a for a in options_of(parser) if a.dest == "weights"]
        if weights:
            assert weights[0].default is None and "the shipped model" in weights[0].help, tool
    from bevanet_core.checkpoint import DEFAULT_WEIGHTS
    from bevanet_core.cli.bench import bench_weights

    for tool in ("bevanet-bench", "bevanet-speed"):
        args = parsers[tool].parse_args([])
        assert bench_weights(args) == (str(DEFAULT_WEIGHTS), None), tool
        args = parsers[tool].parse_args(["--random-weights"])
        assert bench_weights(args) == (None, "bevanet_s"), tool


def test_pretrain_and_train_pass_the_shared_names_on_to_their_configs(tmp_path, monkeypatch):
    from bevanet_core.cli import pretrain, train

    seen = {}
    monkeypatch.setattr(pretrain, "pretrain", lambda cfg, resume: seen.setdefault("pretrain", (cfg, resume)) and {})
    argv = ["--train", str(tmp_path), "--out-dir", str(tmp_path / "run"), "--batch-size", "8", "--threads", "1"]
    assert pretrain.main(argv + ["--iterations", "3", "--resume"]) == 0
    cfg, resume = seen["pretrain"]
    assert (cfg.out_dir, cfg.batch_size, cfg.threads, cfg.iterations) == (str(tmp_path / "run"), 8, 1, 3)
    assert resume == "auto" and cfg.device == "auto" and cfg.precision == "auto"

    monkeypatch.setattr(train, "train", lambda cfg, resume: seen.setdefault("train", cfg) and {})
    (tmp_path / "data").mkdir()
    assert train.main(["--root", str(tmp_path / "data"), "--out", str(tmp_path / "seg")]) == 0
    assert seen["train"].data.root == str(tmp_path / "data") and seen["train"].run.out_dir == str(tmp_path / "seg")
