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

from ..imaging.policy import max_pixels, set_max_pixels
from .args import add, add_all


def configure_logging(verbose: bool = False) -> None:
    """The tools' logging: the library's messages (`logging.getLogger(__name__)` in every module)
    on stderr as plain lines, warnings and errors only, or from INFO up with `verbose` (e.g.
    "exporting ... (once; cached)"). A no-op where logging is configured already."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


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


def add_model_args(p: argparse.ArgumentParser, note: str = "") -> None:
    """Model / runtime options, named like the node's parameters (`note`: what --input-size
    defaults to in this tool, where not the weights' size)."""
    g = p.add_argument_group("model")
    add(g, "weights")
    add(g, "variant")
    add_all(g, "backend", "device", "precision")
    add(g, "input_size", note=note)
    add_all(g, "resize", "threads", "allow_nonfinite_weights")
    add_input_policy_args(p)


def add_tta_args(p: argparse.ArgumentParser) -> None:
    """Test-time augmentation of the offline tools (the node stays single-pass)."""
    add_all(p.add_argument_group("test-time augmentation"), "tta", "tta_scales", "tta_no_flip")


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
    add(p, "max_pixels")


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
    g = p.add_argument_group("live view in Foxglove / Lichtblick (needs foxglove-sdk)")
    add_all(g, "foxglove", "foxglove_host", "foxglove_wait")


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
