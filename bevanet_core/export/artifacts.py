"""The artifact cache: ONNX exports of a model, their fp16 / int8 conversions and TensorRT engines,
made once under `paths.cache_dir()` and found there again (keyed by weights hash, source hash,
calibration set and target environment).

`build_artifact` is the one way in: the runtime calls it (through
`bevanet_core.runtime.loading.request_artifact`) while a backend is created and the file it
needs does not exist yet; no frame ever reaches this module.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional

from ..imaging.geometry import resolve_input_size
from ..paths import cache_dir

log = logging.getLogger(__name__)

KINDS = ("onnx", "engine")


def build_artifact(
    kind: str,
    cfg,
    *,
    model=None,
    info=None,
    source: Optional[Path] = None,
    device_index: int = 0,
) -> Path:
    """The cached artifact of `kind` for a SegmenterConfig, made on first use.

    kind 'onnx': an ONNX model at `cfg.precision`, converted from the ONNX model `source`, or
    exported from `model` (its ModelInfo `info`) at the configured size with a dynamic batch and
    then converted. kind 'engine': a TensorRT engine for GPU `device_index` built from the ONNX
    model `source` at its own precision, at most `cfg.max_batch` frames a batch."""
    if kind == "onnx":
        if source is None:
            if model is None or info is None:
                raise ValueError("build_artifact('onnx') needs a source ONNX model or a model and its info")
            source = exported_onnx_path(model, info, cfg)
        return onnx_for_precision(source, cfg)
    if kind == "engine":
        if source is None:
            raise ValueError("build_artifact('engine') needs the source ONNX model")
        from .tensorrt import ensure_engine

        return ensure_engine(source, cache_dir(cfg.cache_dir), cfg.max_batch, device_index)
    raise ValueError(f"artifact kind must be one of {KINDS}, got {kind!r}")


def exported_onnx_path(model, info, cfg) -> Path:
    """Exports `model` at the configured size with a dynamic batch, cached by weights hash."""
    from .metadata import model_hash
    from .onnx import export_onnx

    width, height = resolve_input_size(cfg.input_size, info)
    # weights and metadata both shape the file (the metadata travels inside it)
    digest = hashlib.sha256((model_hash(model) + info.to_json()).encode()).hexdigest()[:16]
    path = cache_dir(cfg.cache_dir) / "onnx" / f"{info.variant}-{digest}-{width}x{height}-dynbatch.onnx"
    if path.is_file():
        try:
            from .metadata import read_sidecar

            read_sidecar(path)  # the file is whole and the one we wrote
            return path
        except ValueError as exc:
            log.warning("re-exporting %s: %s", path, exc)
    log.info("exporting %s to %s (once; cached)", info.variant, path)
    export_onnx(model, info, path, input_size=(width, height), dynamic_batch=True)
    return path


def onnx_for_precision(path: Path, cfg) -> Path:
    """The ONNX model that runs `cfg.precision`: `path` itself when it already has that
    precision (or fp32, for bf16, which a backend applies at compile time), else its fp16 or
    int8 Q/DQ conversion, made once into the cache directory. int8 needs
    `cfg.calibration_images`. A reduced-precision file asked to run another precision is refused.
    """
    from ..checkpoint import file_sha256
    from .metadata import read_onnx_metadata, serves_precision
    from .precision import convert_fp16, quantize_int8

    path = Path(path)
    have = read_onnx_metadata(path).precision
    want = cfg.precision
    if serves_precision(have, want):
        return path
    if have != "fp32":
        raise ValueError(
            f"{path} is a {have} model but precision {want!r} was asked for; set precision "
            f"to {have!r}, or give the fp32 export to convert"
        )
    if want not in ("fp16", "int8"):
        raise ValueError(f"precision {want!r} has no ONNX form (fp32, fp16, int8)")
    cache = cache_dir(cfg.cache_dir)
    source = file_sha256(path)[:16]
    if want == "fp16":
        out = cache / "onnx" / f"{path.stem}-{source}-fp16.onnx"
        make = lambda: convert_fp16(path, out)  # noqa: E731
    else:
        if not cfg.calibration_images:
            raise ValueError(
                "precision 'int8' needs calibration_images: a folder of real frames from the "
                "deployment domain to calibrate the Q/DQ scales (or give an int8 .onnx export)"
            )
        from .precision import calibration_files, calibration_hash

        calib = calibration_hash(calibration_files(cfg.calibration_images), cfg.resize)
        out = cache / "onnx" / f"{path.stem}-{source}-int8-{calib}.onnx"
        make = lambda: quantize_int8(  # noqa: E731
            path, out, cfg.calibration_images, resize=cfg.resize
        )
    if out.is_file():
        try:
            from .metadata import read_sidecar

            read_sidecar(out)
            return out
        except ValueError as exc:
            log.warning("converting again %s: %s", out, exc)
    log.info("converting %s to %s at %s (once; cached)", path.name, want, out)
    make()
    return out
