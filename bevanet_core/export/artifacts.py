"""Artifacts the runtime makes on demand (exported ONNX models), cached by weights hash."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..imaging.geometry import resolve_input_size
from ..runtime.backend import default_cache_dir

log = logging.getLogger(__name__)


def exported_onnx_path(model, info, cfg) -> Path:
    """Exports `model` at the configured size with a dynamic batch, cached by weights hash."""
    from .metadata import model_hash
    from .onnx import export_onnx

    width, height = resolve_input_size(cfg.input_size, info)
    # weights and metadata both shape the file (the metadata travels inside it)
    digest = hashlib.sha256((model_hash(model) + info.to_json()).encode()).hexdigest()[:16]
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    path = cache / "onnx" / f"{info.variant}-{digest}-{width}x{height}-dynbatch.onnx"
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
    from .onnx import read_onnx_metadata
    from .precision import convert_fp16, quantize_int8

    path = Path(path)
    have = read_onnx_metadata(path).precision
    want = cfg.precision
    if have == want or (have == "fp32" and want == "bf16"):
        return path
    if have != "fp32":
        raise ValueError(
            f"{path} is a {have} model but precision {want!r} was asked for; set precision "
            f"to {have!r}, or give the fp32 export to convert"
        )
    if want not in ("fp16", "int8"):
        raise ValueError(f"precision {want!r} has no ONNX form (fp32, fp16, int8)")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
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
