"""How a backend gets the file it loads.

The runtime loads what exists: a weights file that already is the artifact a backend runs (an
ONNX model at the asked precision, a TensorRT engine for this GPU) is loaded as it is. Anything
else (an export of a checkpoint or of a model in memory, an fp16 or int8 conversion, an engine)
is made by the export layer, which the runtime asks for through `request_artifact` alone, while
a backend is created. A frame never reaches the exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .backend import load_checkpoint


def request_artifact(kind: str, cfg, **kwargs) -> Path:
    """The runtime's one call into the export layer: `bevanet_core.export.artifacts.build_artifact`
    (kind 'onnx' or 'engine'; made once into the cache folder, found there afterwards)."""
    from ..export.artifacts import build_artifact

    return build_artifact(kind, cfg, **kwargs)


# exported models (ONNX, OpenVINO IR, TensorRT engines): they carry their precision
EXPORTED_SUFFIXES = (".onnx", ".xml", ".engine", ".plan", ".trt")


def resolve_precision(weights: Optional[str], asked: str) -> str:
    """The precision to run `weights` at. An exported file (ONNX, OpenVINO IR, TensorRT engine)
    carries its own: 'auto' takes it, an fp32 ONNX may be asked for fp16 or int8 (converted
    once into the cache), bf16 runs an fp32 file, and any other precision that contradicts the
    file is a ValueError naming both. A checkpoint leaves 'auto' to the backend choice."""
    if weights is None or Path(weights).suffix.lower() not in EXPORTED_SUFFIXES:
        return asked  # a checkpoint: loading it needs nothing of the export layer
    from ..export.metadata import artifact_precision, serves_precision

    have = artifact_precision(weights)
    if have is None or asked == "auto":
        return asked if have is None else have
    if serves_precision(have, asked):
        return asked
    if have == "fp32" and Path(weights).suffix.lower() == ".onnx" and asked in ("fp16", "int8"):
        return asked
    raise ValueError(
        f"{weights} is a {have} model but precision {asked!r} was asked for; leave precision at "
        f"'auto' to run it as {have}" + (", or give the fp32 ONNX export to convert" if have != "fp32" else "")
    )


def onnx_to_load(cfg, model=None, info=None) -> tuple[Path, Optional[object]]:
    """(the ONNX model, or for OpenVINO the IR, to load at `cfg.precision`, the ModelInfo of the
    checkpoint or model it was made from, or None when it is the weights file itself, whose
    metadata carries it)."""
    weights = Path(cfg.weights) if cfg.weights else None
    if model is None and weights is not None and weights.suffix.lower() == ".xml":
        return weights, None  # an OpenVINO IR runs as it is (its precision checked by resolve_precision)
    if model is None and weights is not None and weights.suffix.lower() == ".onnx":
        from ..export.metadata import read_onnx_metadata, serves_precision

        if serves_precision(read_onnx_metadata(weights).precision, cfg.precision):
            return weights, None
        return request_artifact("onnx", cfg, source=weights), None
    if model is None:
        model, info = load_checkpoint(cfg.weights, cfg.variant, cfg.allow_nonfinite)
    return request_artifact("onnx", cfg, model=model, info=info), info
