"""Artifacts the runtime makes on demand (exported ONNX models), cached by weights hash."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..imaging.geometry import resolve_input_size
from .backend import default_cache_dir

log = logging.getLogger(__name__)


def exported_onnx_path(model, info, cfg) -> Path:
    """Exports `model` at the configured size with a dynamic batch, cached by weights hash."""
    from ..export.metadata import model_hash
    from ..export.onnx import export_onnx
    width, height = resolve_input_size(cfg.input_size, info)
    # weights and metadata both shape the file (the metadata travels inside it)
    digest = hashlib.sha256((model_hash(model) + info.to_json()).encode()).hexdigest()[:16]
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    path = cache / "onnx" / f"{info.variant}-{digest}-{width}x{height}-dynbatch.onnx"
    if path.is_file():
        try:
            from ..export.metadata import read_sidecar

            read_sidecar(path)  # the file is whole and the one we wrote
            return path
        except ValueError as exc:
            log.warning("re-exporting %s: %s", path, exc)
    log.info("exporting %s to %s (once; cached)", info.variant, path)
    export_onnx(model, info, path, input_size=(width, height), dynamic_batch=True)
    return path
