"""Exporters: ONNX (static shapes, metadata inside and in a sidecar), its fp16 / int8 conversions,
TensorRT engines, and the cache they are made into (`artifacts.build_artifact`, the one entry
the runtime uses).

The names below load on first use, so that reading an artifact's metadata (`export.metadata`:
all the runtime needs to load a file that exists) does not load the exporters.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "ArtifactError": "metadata",
    "ArtifactMetadata": "metadata",
    "model_hash": "metadata",
    "read_onnx_metadata": "metadata",
    "read_sidecar": "metadata",
    "sidecar_path": "metadata",
    "export_onnx": "onnx",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
