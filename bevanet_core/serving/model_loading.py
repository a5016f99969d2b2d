"""The node's model, from its settings: checked paths, the runtime's Segmenter, a warm-up frame.

Plain Python (no ROS): every failure becomes one `ModelLoadError` naming the parameter, the file
and the cause, which the node logs as one line (or the lifecycle node's configure reports).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from .params import NodeSettings


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the parameter and file involved."""


def build_segmenter(settings: NodeSettings) -> Any:
    """A `bevanet_core.runtime.Segmenter` for `settings`; raises ModelLoadError with the cause."""
    if settings.model_path is not None:
        which = "engine" if settings.engine else "weights"
        if not os.path.isfile(settings.model_path):
            raise ModelLoadError(f"parameter {which!r}: file {settings.model_path!r} does not exist")
    else:
        from ..checkpoint import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.is_file():
            raise ModelLoadError(
                "parameter 'weights' is empty, so the shipped CamVid BEVANet-S model is used, but "
                f"{DEFAULT_WEIGHTS} does not exist (it is produced by training; see the README). "
                "Pass weights:=<file.safetensors> or engine:=<file>."
            )
    from ..runtime import Segmenter

    try:
        return Segmenter(settings.segmenter_config())
    except Exception as exc:  # noqa: BLE001 - any failure here is reported the same way
        raise ModelLoadError(
            f"could not load the model (weights={settings.model_path or 'shipped default'!s}, "
            f"backend={settings.backend}, device={settings.device}, "
            f"precision={settings.precision}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def load_segmenter(settings: NodeSettings) -> Any:
    """`build_segmenter`, with the thread count applied first and one warm-up frame after (when
    `settings.warmup`), so that a model that cannot run fails here rather than on the first frame."""
    if settings.num_threads > 0:
        import torch

        torch.set_num_threads(settings.num_threads)
    segmenter = build_segmenter(settings)
    if settings.warmup:
        w, h = segmenter.input_size
        try:
            segmenter.segment(np.zeros((h, w, 3), np.uint8), "rgb8")
        except Exception as exc:  # noqa: BLE001 - a model that cannot run is a load failure
            segmenter.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelLoadError(
                f"the model ({settings.model_path or 'shipped default'}) failed on its "
                f"warm-up frame ({w}x{h}): {type(exc).__name__}: {first}"
            ) from exc
    return segmenter


def describe_load(segmenter: Any, settings: NodeSettings) -> list[str]:
    """The log lines that say what was loaded, from where, on what, at which input size."""
    info = segmenter.info
    net_w, net_h = segmenter.input_size
    pipeline = segmenter.pipeline
    lines = [
        f"loaded {info.variant} ({info.num_classes} classes, {info.dataset or 'unknown dataset'}) from "
        f"{settings.model_path or 'the shipped default weights'} on "
        f"{pipeline['backend']}/{pipeline['device']} {pipeline['precision']}, {pipeline['threads']} thread(s), "
        f"network input {net_w}x{net_h} ({settings.resize})"
    ]
    if segmenter.backend_choice is not None:
        from ..runtime.auto import describe

        lines.append(f"backend auto: {describe(segmenter.backend_choice)}")
    return lines


def unload_segmenter(segmenter: Any) -> None:
    """Closes the segmenter and gives its GPU memory back (best effort)."""
    segmenter.close()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing is best effort
        pass


# the node's /diagnostics status carries its pipeline as KeyValues "pipeline.<field>" (JSON values),
# so a tool that measures the node from outside reports what the node ran
PIPELINE_PREFIX = "pipeline."


def pipeline_values(pipeline: dict) -> list[tuple[str, str]]:
    """`Segmenter.pipeline` -> (key, value) pairs for a DiagnosticStatus."""
    import json

    return [(f"{PIPELINE_PREFIX}{k}", json.dumps(v)) for k, v in pipeline.items()]


def pipeline_from_values(pairs) -> Optional[dict]:
    """The pipeline of a DiagnosticStatus's (key, value) pairs; None when it carries none."""
    import json

    found = {}
    for key, value in pairs:
        if key.startswith(PIPELINE_PREFIX):
            try:
                found[key[len(PIPELINE_PREFIX) :]] = json.loads(value)
            except ValueError:
                found[key[len(PIPELINE_PREFIX) :]] = value
    return found or None
