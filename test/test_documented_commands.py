"""Every shell command that README.md and docs/*.md show runs, as written, on the CPU.

The commands come from the fenced ```bash / ```sh / ```console blocks. A command that cannot
run on a plain CPU machine, or that runs until Ctrl-C, says so in the markdown itself, in a
comment on its line (or on a comment line that opens the block, for the whole block):

    # needs: <what it needs>      e.g. `# needs: tensorrt and an NVIDIA GPU`, `# needs: a system ROS 2`
    # runs until Ctrl-C
    # takes: <how long>           a run whose length is its point, e.g. the whole test suite

This test skips exactly those, with that text as the reason, and runs every other command in
a sandbox (the repository's top-level entries linked into a temporary folder, `../shared`
beside it, `my_data` and `my_bag` made there), block by block in document order, so a command
sees what the commands before it in its block wrote. Tools get a small budget appended (a few
frames, two iterations: the flags a user would use for a quick run, BUDGETS below). Each must
exit 0 and write the files it names (`--json`, `--onnx`, `--out`, `run.out_dir=`, ...).
Commands identical after the budget run once.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^[ \t]*```(bash|sh|console)\n(.*?)^[ \t]*```", re.S | re.M)
SKIP_MARKERS = (r"needs:\s*(.+)", r"(runs until Ctrl-C)", r"takes:\s*(.+)")

# a quick run of each tool: the arguments added to the documented command
BUDGETS = {
    "bevanet-eval": ["--max-frames", "2"],
    "bevanet-calibrate": ["--max-frames", "2"],
    "bevanet-make-bag": ["--max-frames", "4"],
    "bevanet-bag-eval": ["--max-frames", "4"],
    "bevanet-demo": ["--max-frames", "4"],
    "scripts/demo.sh": ["--max-frames", "4"],
    "bevanet-mine": ["--max-frames", "6"],
    "bevanet-predict": ["--max-frames", "2"],
    "bevanet-pseudo-label": ["--max-frames", "2"],
    "bevanet-bench": ["--runs", "2", "--warmup", "1"],
    "bevanet-speed": ["--runs", "2", "--warmup", "1"],
    "benchmarks/bench_node.py": ["--num-frames", "2", "--runs", "1", "--flood-s", "1"],
}
TRAIN_BUDGET = [
    "optim.iterations=2",
    "run.val_every=2",
    "run.val_limit=2",
    "data.base_size=128",
    "data.crop_size=[128,96]",
    "optim.batch_size=2",
    "data.workers=0",
    "run.threads=1",
]
# tools that load a model: `--backend torch` skips backend auto's start-up measurement of every
# backend (and the int8 quantization it may do for a model it has not seen), which
# test/test_auto_backend.py covers; an exported model or a named backend is left as documented
MODEL_TOOLS = {"bevanet-eval", "bevanet-calibrate", "bevanet-bag-eval", "bevanet-demo", "scripts/demo.sh"}
MODEL_TOOLS |= {"bevanet-mine", "bevanet-predict", "bevanet-pseudo-label", "bevanet-bench", "benchmarks/bench_node.py"}
EXPORTED = (".onnx", ".xml", ".engine", ".plan")
# options whose value is a file or folder the command writes
WRITES = ("--json", "--onnx", "--openvino", "--out", "--out-bag", "--markdown", "--plot", "--montage")


@dataclass
class Command:
    doc: str
    line: int
    text: str  # the command as written, continuation lines joined
    skip: str | None  # why it is not run, from its marker
    prelude: str = ""  # the block's earlier commands that `source` something, run first


def documented_commands(docs=DOCS) -> list[Command]:
    commands = []
    for doc in docs:
        text = doc.read_text()
        for block in FENCE.finditer(text):
            first_line = text[: block.start(2)].count("\n") + 1
            block_skip = None
            pending, start, sourced = "", 0, []
            for offset, raw in enumerate(block.group(2).splitlines()):
                line = raw.strip()
                if line.startswith("$ "):
                    line = line[2:]
                if not line:
                    continue
                if line.startswith("#"):
                    if not pending and not commands_in(block.group(2)[: block.group(2).find(raw)]):
                        block_skip = block_skip or marker(line)
                    continue
                if not pending:
                    start = first_line + offset
                pending += line
                if pending.endswith("\\"):
                    pending = pending[:-1] + " "
                    continue
                code, _, comment = split_comment(pending)
                skip = marker(comment) or block_skip
                code = code.strip()
                prelude = " && ".join(sourced)
                name = doc.relative_to(REPO).as_posix() if doc.is_relative_to(REPO) else doc.name
                commands.append(Command(name, start, code, skip, prelude))
                if re.search(r"(^|&& )source ", code):
                    sourced.append(code)
                pending = ""
    return commands


def commands_in(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("#") for line in text.splitlines())


def split_comment(line: str) -> tuple[str, str, str]:
    """'cmd args  # comment' -> ('cmd args', '#', 'comment'), a '#' inside quotes kept."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i], "#", line[i + 1 :]
    return line, "", ""


def marker(comment: str) -> str | None:
    for pattern in SKIP_MARKERS:
        found = re.search(pattern, comment)
        if found:
            return found.group(1).strip()
    return None


def with_budget(command: str) -> str:
    """The command with the quick-run arguments of its tool, per simple command of a && chain."""
    parts = []
    for part in command.split(" && "):
        words = shlex.split(part)
        tool = next((w for w in words if w in BUDGETS or w.endswith("scripts/demo.sh")), None)
        if tool:
            tool = "scripts/demo.sh" if tool.endswith("demo.sh") else tool
            part += " " + shlex.join(BUDGETS[tool])
            if tool == "scripts/demo.sh":  # it runs in the repository: its outputs go to the sandbox
                part += ' --out "$DOCS_SANDBOX/outputs/demo"'
            exported = any(w.endswith(EXPORTED) for w in words)
            if tool in MODEL_TOOLS and "--backend" not in words and not exported:
                part += " --backend torch"
        elif "bevanet-train" in words:
            if "--set" in words:
                i = words.index("--set") + 1
                while i < len(words) and not words[i].startswith("-"):
                    i += 1
                words[i:i] = TRAIN_BUDGET  # after the documented overrides, so that it wins
            else:
                words += ["--set", *TRAIN_BUDGET]
            part = shlex.join(words)
        parts.append(part)
    return " && ".join(parts)


def claimed_outputs(command: str) -> list[str]:
    outputs = []
    for part in command.split(" && "):
        words = shlex.split(part)
        for i, word in enumerate(words[:-1]):
            if word in WRITES and not words[i + 1].startswith("-"):
                outputs.append(words[i + 1])
        for word in words:
            if word.startswith("run.out_dir="):
                outputs.append(word.split("=", 1)[1] + "/best.safetensors")
    return outputs


COMMANDS = documented_commands()


def test_every_block_is_parsed_and_every_skip_says_why():
    assert len(COMMANDS) > 40
    assert any(c.skip is None for c in COMMANDS) and any(c.skip for c in COMMANDS)
    for c in COMMANDS:
        assert c.skip is None or len(c.skip) > 3, c


def test_the_parser_joins_continuations_and_reads_markers(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "```bash\n# needs: a GPU\nnvidia-smi\n```\n\ntext\n\n```sh\nls -a \\\n    -l   # list\n"
        "ros2 launch a b.py   # runs until Ctrl-C\necho '#not a comment'  # takes: 2 h\n```\n```python\nx\n```\n"
    )
    got = [(c.text, c.skip, c.line) for c in documented_commands([doc])]
    assert got == [
        ("nvidia-smi", "a GPU", 3),
        ("ls -a  -l", None, 9),
        ("ros2 launch a b.py", "runs until Ctrl-C", 11),
        ("echo '#not a comment'", "2 h", 12),
    ]
    assert with_budget("bevanet-train --config c.yaml --set a=1 --resume") == (
        "bevanet-train --config c.yaml --set a=1 " + shlex.join(TRAIN_BUDGET) + " --resume"
    )
    assert with_budget("mkdir x && bevanet-eval --root r").endswith(
        "bevanet-eval --root r --max-frames 2 --backend torch"
    )
    assert with_budget("bevanet-eval --weights m.onnx") == "bevanet-eval --weights m.onnx --max-frames 2"
    assert claimed_outputs("bevanet-x --json a.json --out-bag b && t --set run.out_dir=o") == [
        "a.json",
        "b",
        "o/best.safetensors",
    ]


# phrases about the machines and sessions the project is developed on, which a user does not have
DEVELOPMENT_TALK = re.compile(
    r"\blent\b|\bloan\b|\ba (GPU )?session\b|\bsessions\b|device tool|MiB carried|this project's|"
    r"GPU machine here|No GPU was|has not had|# here\b",
    re.I,
)


def test_docs_speak_to_users():
    found = [
        f"{doc.relative_to(REPO)}:{i}: {line.strip()[:100]}"
        for doc in DOCS
        for i, line in enumerate(doc.read_text().splitlines(), 1)
        if DEVELOPMENT_TALK.search(line)
    ]
    assert not found, "docs that speak of how the project is developed:\n" + "\n".join(found)


def test_readme_states_the_weights_terms_and_the_tensorrt_status():
    readme = (REPO / "README.md").read_text()
    assert "Apache License 2.0" in readme and "non-commercial research use" in readme
    assert "not yet built and run an engine" in readme
    assert "about 25 minutes on a 2-core machine" in readme
    assert "Kilted" in readme and "python3-torch-pip" not in (REPO / "package.xml").read_text()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    if not (SHARED / "data" / "camvid").is_dir():
        pytest.skip(f"the documented commands read {SHARED}/data (absent)")
    top = tmp_path_factory.mktemp("docs")
    (top / "shared").symlink_to(SHARED)
    repo = top / "repo"
    repo.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in ("outputs", ".git", "runs") and not entry.name.startswith(".pytest"):
            (repo / entry.name).symlink_to(entry)
    sys.path.insert(0, str(REPO / "test"))
    from test_custom_dataset import make_custom_folder

    make_custom_folder(repo / "my_data")
    shutil.copytree(REPO / "bags" / "solid_white_right", repo / "my_bag")
    return repo


def _env(sandbox: Path) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(venv_bin).parent)
    env["HOME"] = str(sandbox.parent / "home")  # a ~/ws of the commands' own
    env["BEVANET_CACHE"] = str(sandbox.parent / "cache")  # exports and backend choices, shared by the commands
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def script(command: Command) -> str:
    return " && ".join(filter(None, [command.prelude, with_budget(command.text)]))


RUNNABLE = []
_seen = set()
for _c in COMMANDS:
    if _c.skip is None and script(_c) not in _seen:
        _seen.add(script(_c))
        RUNNABLE.append(_c)
CASES = [
    pytest.param(c, id=f"{c.doc}:{c.line}", marks=[pytest.mark.skip(reason=c.skip)] if c.skip else [])
    for c in COMMANDS
    if c.skip or c in RUNNABLE
]


@pytest.mark.parametrize("command", CASES)
def test_documented_command_runs(command: Command, request):
    sandbox = request.getfixturevalue("sandbox")
    run = script(command)
    env = _env(sandbox)
    env["DOCS_SANDBOX"] = str(sandbox)
    done = subprocess.run(
        ["bash", "-c", run],
        # the scripts that set up .venv where they are run in the repository itself: from the
        # sandbox they would install the package again under the sandbox's path
        cwd=REPO if re.search(r"scripts/(bootstrap|demo|test)\.sh", run) else sandbox,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = (done.stdout[-1500:] + "\n" + done.stderr[-2500:]).strip()
    assert done.returncode == 0, f"{command.doc}:{command.line}: `{run}` exited {done.returncode}:\n{tail}"
    written = [Path(out.replace("$DOCS_SANDBOX", str(sandbox))) for out in claimed_outputs(run)]
    missing = [str(out) for out in written if not (sandbox / out).exists()]
    assert not missing, f"{command.doc}:{command.line}: `{run}` did not write {missing}"
