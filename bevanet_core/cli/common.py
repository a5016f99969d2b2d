"""Command-line pieces shared by the tools that run the node's runtime (eval, predict, bag-eval, demo),
and the tools' logging set-up."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from ..imaging.policy import MAX_PIXELS, max_pixels, parse_max_pixels, set_max_pixels
from ..options import BACKENDS, DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_PRECISION, PRECISIONS, RESIZE_MODES
from .validate import int_range


def configure_logging(verbose: bool = False) -> None:
    """The tools' logging: the library's messages (`logging.getLogger(__name__)` in every module)
    on stderr as plain lines, warnings and errors only, or from INFO up with `verbose` (e.g.
    "exporting ... (once; cached)"). A no-op where logging is configured already."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" once: not where the help already names its default, and not for
    None or False (flags and options whose absence has its own meaning, said in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text


# module -> the extra of setup.py that installs it (pip install 'bevanet_ros[EXTRA]')
EXTRAS = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "tensorboard": "train",
    "tqdm": "train",
    "matplotlib": "train",
    "foxglove": "foxglove",
}


def missing_extra_line(prog: str, module: str, what: str = "") -> str:
    """One line naming what to install for `module` (top-level name)."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    need = f"{what} needs" if what else "needs"
    if extra is None:
        return f"{prog}: {need} the Python module {top!r}, which is not installed"
    return (
        f"{prog}: {need} {top!r}, which is not installed: "
        f"pip install -e '.[{extra}]' (or pip install 'bevanet_ros[{extra}]')"
    )


def require(prog: str, modules: tuple[str, ...], what: str = "") -> None:
    """Exits with status 2 and one line naming the extra when a module is missing."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            print(missing_extra_line(prog, module, what), file=sys.stderr)
            raise SystemExit(2)


def extras_guard(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorates a console script's main: a ModuleNotFoundError of an optional dependency
    (anywhere below it) becomes one line naming the extra to install, and status 2."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except ModuleNotFoundError as err:
                name = (err.name or "").split(".")[0]
                if name not in EXTRAS:
                    raise
                print(missing_extra_line(prog, name), file=sys.stderr)
                return 2

        return guarded

    return wrap


def backend_for_weights(weights: str | None, backend: str) -> str:
    """The backend a weights file implies when --backend is left at torch, which cannot run
    it: .onnx -> onnxruntime, .xml -> openvino, .engine/.plan/.trt -> tensorrt; otherwise `backend` unchanged
    (e.g. --backend openvino with an .onnx file)."""
    if weights is None or backend != "torch":
        return backend
    suffix = str(weights).lower().rsplit(".", 1)[-1]
    implied = {"onnx": "onnxruntime", "xml": "openvino", "engine": "tensorrt", "plan": "tensorrt", "trt": "tensorrt"}
    return implied.get(suffix, backend)


EXPORTED_SUFFIXES = (".onnx", ".xml", ".engine", ".plan", ".trt")


def is_exported_model(weights: Optional[str]) -> bool:
    """Whether `weights` is an exported model (ONNX, OpenVINO IR, TensorRT engine): it carries its
    own input size and precision."""
    return weights is not None and Path(weights).suffix.lower() in EXPORTED_SUFFIXES


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Model / runtime options, named like the node's parameters."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--weights",
        default=None,
        help="checkpoint (.safetensors/.pt), .onnx, OpenVINO IR (.xml) or TensorRT engine; default: the shipped model",
    )
    g.add_argument("--variant", default=None, help="expected variant (checked against the weights)")
    g.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        choices=BACKENDS,
        help="inference backend; auto measures the installed ones and keeps the fastest, as the node "
        f"does (default: {DEFAULT_BACKEND})",
    )
    g.add_argument("--device", default=DEFAULT_DEVICE, help=f"cpu, cuda, cuda:1 (default: {DEFAULT_DEVICE})")
    g.add_argument(
        "--precision",
        default=DEFAULT_PRECISION,
        choices=PRECISIONS,
        help="auto: an exported file's own precision; for a checkpoint, what --backend auto chooses "
        "(int8 only where it passes the accuracy guard), fp32 with any other backend "
        f"(default: {DEFAULT_PRECISION})",
    )
    g.add_argument("--input-size", default=None, help="network input WxH, multiples of 8 (default: from the weights)")
    g.add_argument(
        "--resize",
        default="stretch",
        choices=RESIZE_MODES,
        help="fit frames to the network input (default: stretch)",
    )
    g.add_argument(
        "--threads",
        type=int_range(1, 4096),
        default=None,
        help="CPU threads of the runtime: torch, ONNX Runtime and OpenVINO (default: half the cores this "
        "process may use, 1 to 4, as the node)",
    )
    g.add_argument(
        "--allow-nonfinite-weights",
        action="store_true",
        help="accept weights holding NaN or inf (research only; refused by default)",
    )
    add_input_policy_args(p)


def add_tta_args(p: argparse.ArgumentParser) -> None:
    """Test-time augmentation of the offline tools (the node stays single-pass)."""
    g = p.add_argument_group("test-time augmentation")
    g.add_argument(
        "--tta",
        action="store_true",
        help="average the logits of several input scales, each plain and mirrored (slower: one pass each)",
    )
    g.add_argument(
        "--tta-scales",
        type=_tta_scales_arg,
        default=None,
        metavar="S,S,...",
        help="the input scales of --tta, relative to --input-size (default: 0.75,1,1.25)",
    )
    g.add_argument("--tta-no-flip", action="store_true", help="--tta without the mirrored passes")


def _tta_scales_arg(text: str):
    from ..runtime.tta import parse_scales

    try:
        return parse_scales(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def with_tta(args: argparse.Namespace, segmenter):
    """`segmenter` wrapped in test-time augmentation when --tta asks for it, else as it is."""
    if not args.tta:
        if args.tta_scales is not None or args.tta_no_flip:
            raise ValueError("--tta-scales and --tta-no-flip only apply with --tta")
        return segmenter
    from ..runtime.tta import DEFAULT_TTA_SCALES, TestTimeAugmentation

    return TestTimeAugmentation(segmenter, args.tta_scales or DEFAULT_TTA_SCALES, flip=not args.tta_no_flip)


def tta_summary(segmenter) -> Optional[dict]:
    """What a report records of test-time augmentation: None for a single pass."""
    scales = getattr(segmenter, "scales", None)
    if scales is None:
        return None
    return {
        "scales": list(scales),
        "flip": segmenter.flip,
        "passes": segmenter.passes,
        "input_sizes": [list(s) for s in segmenter.sizes],
    }


def add_input_policy_args(p: argparse.ArgumentParser) -> None:
    """The input policy's pixel cap (frames above it are refused before decoding)."""
    p.add_argument(
        "--max-pixels",
        type=_max_pixels_arg,
        default=None,
        help=f"largest frame decoded, width*height (default {MAX_PIXELS}, or $BEVANET_MAX_PIXELS)",
    )


def _max_pixels_arg(text: str) -> int:
    try:
        return parse_max_pixels(text, "--max-pixels")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def apply_input_policy(args: argparse.Namespace) -> None:
    """Sets the process-wide pixel cap from --max-pixels, when given; else checks
    $BEVANET_MAX_PIXELS at the start (exit 2 with one line) instead of at every frame."""
    if getattr(args, "max_pixels", None) is not None:
        set_max_pixels(args.max_pixels)
        return
    try:
        max_pixels()
    except ValueError as exc:
        print(f"{Path(sys.argv[0]).name or 'bevanet'}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def build_segmenter(args: argparse.Namespace, **overrides):
    """The node's runtime configured from the command line (`overrides` replace config fields)."""
    from ..runtime import Segmenter, SegmenterConfig

    apply_input_policy(args)
    args.backend = backend_for_weights(args.weights, args.backend)
    if getattr(args, "tta", False) and args.backend == "auto":
        from ..runtime.tta import DEFAULT_TTA_SCALES

        if any(s != 1.0 for s in args.tta_scales or DEFAULT_TTA_SCALES):
            # the pipelines auto weighs are exported at one input size; test-time scales need any
            args.backend = "torch"
    fields = dict(
        weights=args.weights,
        variant=args.variant,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        input_size=args.input_size,
        resize=args.resize,
        num_threads=args.threads or None,
        allow_nonfinite=getattr(args, "allow_nonfinite_weights", False),
    )
    fields.update(overrides)
    return Segmenter(SegmenterConfig(**fields))


def add_foxglove_args(p: argparse.ArgumentParser) -> None:
    """--foxglove [PORT]: the live view of bevanet_core.serving.foxglove_view."""
    from ..serving.foxglove_view import DEFAULT_PORT

    g = p.add_argument_group("live view in Foxglove / Lichtblick (needs foxglove-sdk)")
    g.add_argument(
        "--foxglove",
        nargs="?",
        type=int,
        const=DEFAULT_PORT,
        default=None,
        metavar="PORT",
        help="serve the camera image, colour mask, overlay and latency over the Foxglove "
        f"WebSocket protocol on ws://HOST:PORT (PORT default: {DEFAULT_PORT}; 0 picks a free "
        "one); in Foxglove: Open connection > Foxglove WebSocket",
    )
    g.add_argument(
        "--foxglove-host",
        default="127.0.0.1",
        help="address the live view listens on; 0.0.0.0 lets a laptop on the network connect",
    )
    g.add_argument(
        "--foxglove-wait",
        type=float,
        default=30.0,
        help="seconds to wait for a viewer to subscribe before starting; 0 starts at once",
    )


def start_foxglove(args: argparse.Namespace, prog: str):
    """The FoxgloveView that --foxglove asks for (None without it); waits for a viewer."""
    if args.foxglove is None:
        return None
    require(prog, ("foxglove",), "--foxglove")
    from ..serving.foxglove_view import FoxgloveView

    try:
        view = FoxgloveView(port=args.foxglove, host=args.foxglove_host)
    except Exception as err:  # noqa: BLE001 - e.g. the port is taken: say so, in one line
        raise SystemExit(f"{prog}: cannot serve the Foxglove live view on port {args.foxglove}: {err}") from None
    print(f"{prog}: Foxglove live view on {view.url}", flush=True)
    if args.foxglove_wait > 0:
        print(f"{prog}: waiting up to {args.foxglove_wait:g} s for a viewer to subscribe", flush=True)
        if not view.wait_for_viewer(args.foxglove_wait):
            print(f"{prog}: no viewer yet; starting anyway", flush=True)
    return view


def foxglove_callback(view, colorize: Callable):
    """A frame callback that sends a FrameRecord to `view`."""

    def send(rec) -> None:
        view.publish(rec.stamp, rec.rgb, colorize(rec.mask), rec.overlay, rec.latency_ms)

    return send
