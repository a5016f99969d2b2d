"""The vocabulary of the bevanet-* tools: every option that more than one tool takes is defined
here once (name, meaning, validator, default and help text), and every tool builds its parser
with `make_parser` and adds these options with `add`.

Naming rules, the same in every tool:
- `--out` is where a tool's output goes: the folder it writes its files into, or the file itself
  for a tool whose whole output is one file (bevanet-rviz-config). A file written beside the
  main output, or by a tool without one, is named by what it holds: `--json`, `--markdown`,
  `--plot`, `--montage`, `--overlay-video`, `--onnx`, `--engine`, `--openvino`, `--out-bag`.
- `--input-size WxH` is the network input, `--frame-size WxH` the camera frames, `--resize MODE`
  how a frame is fitted to the network input.
- `--root DIR` is a dataset's root folder and `--list FILE` its list of 'image label' pairs,
  relative to `--root`; `--dataset NAME` says how its labels read.
- `--max-frames N` stops reading after N frames (images); `--every N` keeps every N-th.
- `--weights` defaults to the shipped model everywhere; a seeded untrained network is asked for
  by name with `--random-weights`.
- Runtime options (`--backend`, `--device`, `--precision`, `--threads`) are named like the node's
  parameters and default to the node's values.

The former spellings (`ALIASES`) still parse, hidden from `--help`, so that existing command
lines keep working. `LEGACY` lists the two former spellings that another tool uses for something
else; each stays accepted only by the tool that had it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from ..imaging.policy import MAX_PIXELS
from ..options import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_DEVICE,
    DEFAULT_PRECISION,
    DEFAULT_RESIZE,
    PRECISIONS,
    RESIZE_MODES,
    SEGMENTATION_MODEL_NAMES,
)
from .validate import float_range, int_range, label_topic_name, max_pixels_arg, port_number, topic_name, tta_scales_arg

FOXGLOVE_PORT = 8765  # bevanet_core.serving.foxglove_view.DEFAULT_PORT (a test keeps them equal)
LABEL_TOPIC = "/camera/labels"  # bevanet_core.bags.results.DEFAULT_LABEL_TOPIC (likewise)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of the vocabulary. `varies` says why tools may give it their own default or
    choices (empty: one default everywhere, and a tool may only make it required)."""

    flag: str
    help: str
    default: Any = None
    type: Optional[Callable[[str], Any]] = None
    action: Optional[str] = None
    choices: Optional[Sequence[Any]] = None
    metavar: Optional[str] = None
    nargs: Any = None
    const: Any = None
    aliases: tuple[str, ...] = ()
    varies: str = ""

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


_VOCABULARY = (
    # ---- the model and the runtime (named like the node's parameters)
    Option(
        "--weights",
        "checkpoint (.safetensors/.pt), .onnx, OpenVINO IR (.xml) or TensorRT engine (default: the shipped model)",
    ),
    Option(
        "--random-weights",
        "time a seeded untrained --variant (default bevanet_s) instead of --weights: speed does not "
        "depend on the weights, so networks without trained weights can be timed",
        action="store_true",
    ),
    Option(
        "--variant",
        "the network NAME, checked against the weights (default: what the weights say); one of "
        + ", ".join(SEGMENTATION_MODEL_NAMES),
        choices=SEGMENTATION_MODEL_NAMES,
        metavar="NAME",
        varies="bevanet-pretrain trains the classifier backbones, which have names of their own",
    ),
    Option(
        "--backend",
        "inference backend; auto measures the installed ones and keeps the fastest, as the node does",
        default=DEFAULT_BACKEND,
        choices=BACKENDS,
    ),
    Option(
        "--device",
        "cpu, cuda or cuda:N",
        default=DEFAULT_DEVICE,
        varies="bevanet-pretrain trains on a GPU where there is one (auto)",
    ),
    Option(
        "--precision",
        "auto: an exported file's own precision; for a checkpoint, what --backend auto chooses (int8 "
        "only where it passes the accuracy guard), fp32 with any other backend",
        default=DEFAULT_PRECISION,
        choices=PRECISIONS,
        varies="bevanet-export writes one of fp32/fp16/int8 into the ONNX; bevanet-pretrain trains in "
        "the hardware's mixed precision",
    ),
    Option(
        "--input-size",
        "network input WxH, multiples of 8 (default: from the weights)",
        metavar="WxH",
        aliases=("--size",),
    ),
    Option(
        "--resize",
        "how a frame is fitted to the network input",
        default=DEFAULT_RESIZE,
        choices=RESIZE_MODES,
    ),
    Option(
        "--threads",
        "CPU threads of the runtime: torch, ONNX Runtime and OpenVINO (default: half the cores this "
        "process may use, 1 to 4, as the node)",
        type=int_range(1, 4096),
        varies="bevanet-pretrain trains with torch's own thread count unless told",
    ),
    Option(
        "--allow-nonfinite-weights",
        "accept weights holding NaN or inf (research only; refused by default)",
        action="store_true",
    ),
    Option(
        "--max-pixels",
        f"largest frame decoded, width*height (default {MAX_PIXELS}, or $BEVANET_MAX_PIXELS)",
        type=max_pixels_arg,
    ),
    Option("--calib-images", "folder of real frames that int8 calibrates its quantization scales on", type=Path),
    # ---- test-time augmentation of the offline tools (the node stays single-pass)
    Option(
        "--tta",
        "average the logits of several input scales, each plain and mirrored (slower: one pass each)",
        action="store_true",
    ),
    Option(
        "--tta-scales",
        "the input scales of --tta, relative to --input-size (default: 0.75,1,1.25)",
        type=tta_scales_arg,
        metavar="S,S,...",
    ),
    Option("--tta-no-flip", "--tta without the mirrored passes", action="store_true"),
    # ---- datasets
    Option(
        "--dataset",
        "how the dataset's files and labels read",
        choices=("camvid", "cityscapes", "ade20k", "custom"),
        varies="each tool reads the datasets it supports; bevanet-bag-eval maps labels as CamVid unless told",
    ),
    Option("--root", "dataset root folder", type=Path, aliases=("--dataset-root", "--data-root")),
    Option("--list", "list file of 'image label' pairs, relative to --root (or absolute)", type=Path),
    Option(
        "--split",
        "named split of the dataset",
        varies="bevanet-eval reports CamVid's held-out drive and val by default; bevanet-calibrate "
        "needs the split named",
    ),
    Option("--labels", "folder of label PNGs named like the frames", type=Path),
    # ---- how much of the input is read
    Option(
        "--max-frames",
        "stop after N frames (images) (default: all)",
        type=int_range(1),
        metavar="N",
        aliases=("--limit",),
    ),
    Option("--every", "keep every N-th frame", default=1, type=int_range(1), metavar="N"),
    Option(
        "--frame-size",
        "camera frame WxH",
        metavar="WxH",
        varies="bevanet-bench synthesises frames at the network input size; bevanet-make-bag stores them as read",
    ),
    # ---- timing
    Option(
        "--runs",
        "timed runs",
        default=50,
        type=int_range(1),
        varies="bevanet-speed times several paths in one run",
    ),
    Option(
        "--warmup",
        "runs or frames first, left out of the latency statistics",
        default=10,
        type=int_range(0),
        varies="bevanet-bag-eval replays real frames and leaves out the first only",
    ),
    Option(
        "--batch",
        "frames per inference",
        default=1,
        type=int_range(1, 4096),
        aliases=("--batch-size",),
        varies="bevanet-pretrain trains on large batches",
    ),
    # ---- bags and topics
    Option(
        "--image-topic",
        "camera topic",
        type=topic_name,
        aliases=("--topic",),
        varies="a tool reading a bag finds its only image topic; bevanet-make-bag names the one it writes",
    ),
    Option(
        "--label-topic",
        "mono8 ground-truth topic (255 = ignore), paired with the frames by header stamp; 'none': no labels",
        default=LABEL_TOPIC,
        type=label_topic_name,
    ),
    Option(
        "--storage",
        "rosbag2 storage of the bags written",
        default="mcap",
        choices=("mcap", "sqlite3"),
        aliases=("--format", "--out-format"),
    ),
    Option("--overwrite", "replace an existing output bag", action="store_true"),
    # ---- the deployed node (bag-eval, demo)
    Option(
        "--through-node",
        "send the frames over DDS to a running segmentation node instead of the in-process runtime",
        action="store_true",
    ),
    Option(
        "--node-input",
        "topic the node subscribes (remap its `image` to it)",
        default="/camera/image_raw",
        type=topic_name,
    ),
    Option("--node-mask", "the node's mask topic", default="/segmentation/mask", type=topic_name),
    Option(
        "--node-timeout",
        "seconds to wait for each mask before counting the frame dropped",
        default=5.0,
        type=float_range(0.0, 3600.0, lo_open=True),
    ),
    # ---- the Foxglove live view
    Option(
        "--foxglove",
        "serve the camera image, colour mask, overlay and latency over the Foxglove WebSocket protocol "
        f"on ws://HOST:PORT (PORT default: {FOXGLOVE_PORT}; 0 picks a free one; default: no live view); "
        "in Foxglove: Open connection > Foxglove WebSocket",
        type=port_number,
        nargs="?",
        const=FOXGLOVE_PORT,
        metavar="PORT",
    ),
    Option(
        "--foxglove-host",
        "address the live view listens on; 0.0.0.0 lets a laptop on the network connect",
        default="127.0.0.1",
    ),
    Option(
        "--foxglove-wait",
        "seconds to wait for a viewer to subscribe before starting; 0 starts at once",
        default=30.0,
        type=float_range(0.0, 86400.0),
    ),
    # ---- outputs
    Option(
        "--out",
        "output folder",
        type=Path,
        aliases=("--out-dir",),
        varies="each tool writes its own folder (or asks for one); bevanet-rviz-config writes one file",
    ),
    Option("--json", "write the report as JSON to this file", type=Path),
    Option("--plot", "write a plot of the run to this image file", type=Path),
    Option("--resume", "resume from a checkpoint (default without a value: <out>/last.pt)", nargs="?", const="auto"),
)
OPTIONS: dict[str, Option] = {o.dest: o for o in _VOCABULARY}

ALIASES: dict[str, str] = {alias: o.flag for o in OPTIONS.values() for alias in o.aliases}
# (tool, former spelling) -> its dest there: accepted by that tool only, hidden from --help
LEGACY: dict[tuple[str, str], str] = {
    ("bevanet-make-bag", "--resize"): "frame_size",
    ("bevanet-bag-eval", "--video"): "overlay_video",
}


class ToolFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, "(default: X)", unless the help names it ("none" where the
    option is off unless given; nothing for flags), and hides the former spellings of an option."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or action.nargs == 0 or action.required:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + (" (default: none)" if action.default is None else " (default: %(default)s)")
        return text

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:  # a copy of the action without them
            clone = argparse.Action.__new__(type(action))
            clone.__dict__.update(action.__dict__, option_strings=[s for s in action.option_strings if s not in hidden])
            action = clone
        return super()._format_action_invocation(action)


class ToolParser(argparse.ArgumentParser):
    """A tool's parser. An option with an optional value (e.g. `--foxglove [PORT]`) followed by a
    word its type refuses takes no value, so `bevanet-bag-eval --foxglove bags/x` reads the bag
    as the positional argument it is."""

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        optional_value = {
            s: a for a in self._actions if a.nargs == argparse.OPTIONAL and a.type for s in a.option_strings
        }
        out = []
        for i, token in enumerate(argv):
            if token == "--":
                out.extend(argv[i:])
                break
            action = optional_value.get(token)
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if action is not None and nxt is not None and not nxt.startswith("-") and not _accepts(action, nxt):
                token = f"{token}={action.const}"
            out.append(token)
        return super().parse_known_args(out, namespace)


def _accepts(action: argparse.Action, text: str) -> bool:
    try:
        action.type(text)
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return text.lstrip("+-").isdigit()  # a number out of range: refused by the option itself
    return True


def make_parser(prog: str, description: str, epilog: Optional[str] = None) -> ToolParser:
    """The parser of the tool `prog` (its console script's name)."""
    return ToolParser(prog=prog, description=description, epilog=epilog, formatter_class=ToolFormatter)


def add(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    dest: str,
    *,
    note: str = "",
    required: bool = False,
    legacy: Sequence[str] = (),
    **own: Any,
) -> argparse.Action:
    """Adds the vocabulary's option `dest` to `parser` (or an argument group). `note` adds what
    the option means in this tool; `own` (default, choices, type) only where the option `varies`;
    `legacy` names this tool's former spellings listed in LEGACY."""
    option = OPTIONS[dest]
    if own and not option.varies:
        raise TypeError(f"{option.flag} has one {', '.join(own)} in every tool")
    if set(own) - {"default", "choices", "type", "help", "metavar"}:
        raise TypeError(f"{option.flag}: only default, choices, type, help and metavar may be a tool's own")
    kwargs: dict[str, Any] = {"help": option.help, "default": option.default}
    for name in ("type", "choices", "metavar", "nargs", "const", "action"):
        value = getattr(option, name)
        if value is not None:
            kwargs[name] = value
    kwargs.update(own)
    if note:  # before the help's own "(default: ...)", which the note may replace
        head, paren, tail = kwargs["help"].partition(" (default")
        sep = " " if note.startswith("(") else ": "
        kwargs["help"] = f"{head}{sep}{note}" + ("" if "default" in note else paren + tail)
    if required:
        kwargs["required"] = True
    hidden = tuple(option.aliases) + tuple(legacy)
    action = parser.add_argument(option.flag, *hidden, dest=option.dest, **kwargs)
    action.hidden_aliases = hidden
    action.vocabulary = dest
    return action


def add_all(parser, *dests: str) -> None:
    """Adds several options of the vocabulary as they are."""
    for dest in dests:
        add(parser, dest)


def hide(action: argparse.Action, *spellings: str) -> argparse.Action:
    """Marks a tool's own option's former `spellings` (in LEGACY) as hidden from --help."""
    action.hidden_aliases = spellings
    return action
