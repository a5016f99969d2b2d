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


def onnx_to_load(cfg, model=None, info=None) -> tuple[Path, Optional[object]]:
    """(the ONNX model to load at `cfg.precision`, the ModelInfo of the checkpoint or model it was
    made from, or None when it is the `.onnx` weights file itself, whose metadata carries it)."""
    weights = Path(cfg.weights) if cfg.weights else None
    if model is None and weights is not None and weights.suffix.lower() == ".onnx":
        from ..export.metadata import read_onnx_metadata, serves_precision

        if serves_precision(read_onnx_metadata(weights).precision, cfg.precision):
            return weights, None
        return request_artifact("onnx", cfg, source=weights), None
    if model is None:
        model, info = load_checkpoint(cfg.weights, cfg.variant, cfg.allow_nonfinite)
    return request_artifact("onnx", cfg, model=model, info=info), info
