"""TensorRT engines from exported ONNX models: strongly typed builds, an engine cache, sidecars.

Every network is created STRONGLY_TYPED, the only mode TensorRT 11 has and the one TensorRT 10
recommends: the precision is the ONNX file's own (fp32; fp16-typed tensors; int8 as explicit
Q/DQ nodes, see `export/precision.py`), and no weak-typing builder flag (`BuilderFlag.FP16`,
`BuilderFlag.INT8`) or calibrator is used. So one artifact builds on Jetson (TensorRT 10) and on
a current RTX (TensorRT 11). The API names used here are checked against both versions'
bindings by `test/test_tensorrt_api.py`; only a GPU run shows that the builds succeed and how
fast the engines are.

An engine only runs on the TensorRT version and GPU compute capability it was built for. The
cache key holds the ONNX file's hash, the precision, the TensorRT version, the compute
capability, the input size, the max batch and (int8) the calibration data, and the sidecar
records them, so a foreign engine is detected before deserialisation: rebuilt from its ONNX
when that is at hand, else refused with a message naming both environments.

The key/sidecar/staleness logic below needs neither tensorrt nor a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Optional

from ..checkpoint import file_sha256
from ..paths import atomic_write
from .metadata import (
    ArtifactError,
    ArtifactMetadata,
    PathLike,
    now_iso,
    read_sidecar,
    tool_versions,
    write_sidecar,
)

log = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


# ------------------------------------------------------------ keys and staleness (no TensorRT)


@dataclasses.dataclass(frozen=True)
class TargetEnvironment:
    """What an engine is bound to: the TensorRT version and the GPU's compute capability."""

    trt_version: str
    compute_capability: str  # "8.6", "9.0", ...
    gpu_name: str = ""

    @classmethod
    def current(cls, device_index: int = 0) -> TargetEnvironment:
        """The environment of this process (needs tensorrt and a CUDA GPU)."""
        import tensorrt as trt
        import torch

        major, minor = torch.cuda.get_device_capability(device_index)
        return cls(trt.__version__, f"{major}.{minor}", torch.cuda.get_device_name(device_index))


@dataclasses.dataclass(frozen=True)
class EngineKey:
    """Everything an engine's bytes depend on; equal keys mean one cached engine serves both."""

    onnx_hash: str
    precision: str
    trt_version: str
    compute_capability: str
    input_size: tuple[int, int]
    max_batch: int
    calibration_hash: str = ""

    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self, variant: str) -> str:
        w, h = self.input_size
        sm = self.compute_capability.replace(".", "")
        return (
            f"{variant}-{w}x{h}-b{self.max_batch}-{self.precision}-trt{self.trt_version}-sm{sm}-{self.digest()}.engine"
        )


def engine_key(
    onnx_path: PathLike,
    onnx_meta: ArtifactMetadata,
    precision: str,
    env: TargetEnvironment,
    max_batch: int,
    calibration_hash: str = "",
) -> EngineKey:
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {ENGINE_PRECISIONS}, got {precision!r}")
    return EngineKey(
        file_sha256(onnx_path),
        precision,
        env.trt_version,
        env.compute_capability,
        tuple(onnx_meta.input_size),
        int(max_batch),
        calibration_hash if precision == "int8" else "",
    )


def stale_reasons(meta: ArtifactMetadata, env: TargetEnvironment) -> list[str]:
    """Why an engine described by `meta` cannot run in `env` (empty = it can)."""
    reasons = []
    if meta.format != "tensorrt":
        reasons.append(f"it is a {meta.format!r} artifact, not a TensorRT engine")
    built_trt = meta.versions.get("tensorrt", "unknown")
    if built_trt != env.trt_version:
        reasons.append(f"built with TensorRT {built_trt}, this process has TensorRT {env.trt_version}")
    built_cc = str(meta.device.get("compute_capability", "unknown"))
    if built_cc != env.compute_capability:
        gpu = f" ({meta.device.get('gpu_name')})" if meta.device.get("gpu_name") else ""
        here = f" ({env.gpu_name})" if env.gpu_name else ""
        reasons.append(f"built for compute capability {built_cc}{gpu}, this GPU is {env.compute_capability}{here}")
    return reasons


def check_engine(path: PathLike, env: TargetEnvironment) -> ArtifactMetadata:
    """Reads an engine's sidecar and raises ArtifactError naming every mismatch with `env`."""
    meta = read_sidecar(path)
    reasons = stale_reasons(meta, env)
    if reasons:
        source = meta.extra.get("source_onnx")
        hint = (
            f"rebuild it: bevanet-export --onnx {source} --engine {path} --precision {meta.precision}"
            if source
            else "rebuild it from its ONNX model with bevanet-export"
        )
        raise ArtifactError(f"{path} cannot run here: {'; '.join(reasons)}; {hint}")
    return meta


def engine_metadata(
    onnx_meta: ArtifactMetadata,
    onnx_path: PathLike,
    key: EngineKey,
    env: TargetEnvironment,
    extra: Optional[dict[str, Any]] = None,
) -> ArtifactMetadata:
    """The sidecar content of an engine built from `onnx_path` under `key`."""
    versions = dict(tool_versions())
    versions["tensorrt"] = env.trt_version
    return ArtifactMetadata(
        format="tensorrt",
        model_info=dict(onnx_meta.model_info),
        input_size=tuple(onnx_meta.input_size),
        batch=key.max_batch,
        dynamic_batch=onnx_meta.dynamic_batch,
        precision=key.precision,
        model_hash=onnx_meta.model_hash,
        source_hash=key.onnx_hash,
        input_name=onnx_meta.input_name,
        output_name=onnx_meta.output_name,
        output_stride=onnx_meta.output_stride,
        bn_folded=onnx_meta.bn_folded,
        exporter=f"tensorrt {env.trt_version}",
        opset=onnx_meta.opset,
        versions=versions,
        device={"compute_capability": env.compute_capability, "gpu_name": env.gpu_name},
        extra={
            "source_onnx": str(Path(onnx_path).resolve()),
            "cache_key": key.digest(),
            **(extra or {}),
        },
        created=now_iso(),
    )


# ------------------------------------------------------------ building (TensorRT 10)


def _require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ValueError(
            "TensorRT is not installed: pip install tensorrt (matching your CUDA), "
            "or use the onnxruntime / torch backends"
        ) from None
    return trt


def build_engine(
    onnx_path: PathLike,
    engine_path: PathLike,
    precision: Optional[str] = None,
    max_batch: int = 1,
    workspace_gib: float = 4.0,
    device_index: int = 0,
) -> ArtifactMetadata:
    """Builds a strongly typed TensorRT engine from a bevanet ONNX export; writes it and its
    sidecar atomically.

    precision: None = the ONNX file's (fp32, fp16-typed, or int8 Q/DQ); any other value must
    match it, since a strongly typed build cannot change it: convert the ONNX first
    (`bevanet-export --precision fp16|int8`).
    """
    trt = _require_tensorrt()
    import torch

    from .metadata import read_onnx_metadata
    from .precision import onnx_precision

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if engine_path.suffix.lower() not in ENGINE_SUFFIXES:
        raise ValueError(f"engine path must end in one of {ENGINE_SUFFIXES}, got {engine_path}")
    onnx_meta = read_onnx_metadata(onnx_path)
    typed = onnx_precision(onnx_path)
    precision = _check_precision(onnx_path, typed, precision)
    if not onnx_meta.dynamic_batch and max_batch != onnx_meta.batch:
        log.info("%s has a static batch of %d; using it", onnx_path.name, onnx_meta.batch)
        max_batch = onnx_meta.batch
    env = TargetEnvironment.current(device_index)

    key = engine_key(onnx_path, onnx_meta, precision, env, max_batch)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # the precision comes from the graph's types and Q/DQ nodes, never from builder flags
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    w, h = onnx_meta.input_size
    name = network.get_input(0).name
    if onnx_meta.dynamic_batch:
        profile = builder.create_optimization_profile()
        profile.set_shape(name, (1, 3, h, w), (1, 3, h, w), (max_batch, 3, h, w))
        config.add_optimization_profile(profile)
    with torch.cuda.device(device_index):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT failed to build an engine from {onnx_path} ({precision}); see its log above")
    data = bytes(serialized)
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(data))
    extra: dict[str, Any] = {"strongly_typed": True}
    if precision == "int8":
        extra["int8_mode"] = "explicit_qdq"
    meta = engine_metadata(onnx_meta, onnx_path, key, env, extra)
    write_sidecar(engine_path, meta)
    log.info("built %s engine %s (%s, %s)", precision, engine_path, env.gpu_name, env.trt_version)
    return meta


def _check_precision(onnx_path: Path, typed: str, asked: Optional[str]) -> str:
    """The engine precision: the ONNX's own; a different request is refused."""
    if asked is None or asked == typed:
        return typed
    if asked not in ENGINE_PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {ENGINE_PRECISIONS}, got {asked!r}")
    raise ValueError(
        f"{onnx_path} is a {typed} model and TensorRT builds it strongly typed, so the engine "
        f"is {typed}; for a {asked} engine export a {asked} ONNX first "
        f"(bevanet-export --onnx M.{asked}.onnx --precision {asked}"
        + (" --calib-images FRAMES" if asked == "int8" else "")
        + ")"
    )


def ensure_engine(
    onnx_path: PathLike,
    cache_dir: PathLike,
    max_batch: int = 1,
    device_index: int = 0,
) -> Path:
    """The cached engine for this ONNX model (at its own precision) and environment, built on
    first use."""
    from .metadata import read_onnx_metadata
    from .precision import onnx_precision

    onnx_path = Path(onnx_path)
    onnx_meta = read_onnx_metadata(onnx_path)
    env = TargetEnvironment.current(device_index)
    if not onnx_meta.dynamic_batch:
        max_batch = onnx_meta.batch
    precision = onnx_precision(onnx_path)
    key = engine_key(onnx_path, onnx_meta, precision, env, max_batch)
    path = Path(cache_dir) / "engines" / key.filename(onnx_meta.model_info.get("variant", "model"))
    if path.is_file():
        try:
            check_engine(path, env)
            return path
        except ArtifactError as exc:
            log.warning("rebuilding cached engine: %s", exc)
    build_engine(onnx_path, path, precision, max_batch, device_index=device_index)
    return path
