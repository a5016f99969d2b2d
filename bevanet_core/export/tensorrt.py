"""TensorRT engines from exported ONNX models: fp32/fp16/int8 builds, an engine cache, sidecars.

Written against the TensorRT 10 Python API (name-based tensors, `build_serialized_network`).
int8 comes either from entropy calibration (`IInt8EntropyCalibrator2`, fed with real images
through the runtime's own preprocessing, with a calibration cache) or from an ONNX model that
already carries Q/DQ nodes (explicit quantization). TensorRT 11 removed the weak-typing flags
(`BuilderFlag.FP16/INT8`) and calibrators: there, only fp32 and already-typed / Q/DQ ONNX
models can be built, and asking for more is refused with a message saying so.

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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..checkpoint import atomic_write, file_sha256
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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CALIBRATION_LIMIT = 512  # images used at most; entropy calibration saturates well before


# ------------------------------------------------------------ keys and staleness (no TensorRT)


@dataclasses.dataclass(frozen=True)
class TargetEnvironment:
    """What an engine is bound to: the TensorRT version and the GPU's compute capability."""

    trt_version: str
    compute_capability: str  # "8.6", "9.0", ...
    gpu_name: str = ""

    @classmethod
    def current(cls, device_index: int = 0) -> "TargetEnvironment":
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
    input_size: Tuple[int, int]
    max_batch: int
    calibration_hash: str = ""

    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self, variant: str) -> str:
        w, h = self.input_size
        sm = self.compute_capability.replace(".", "")
        return (
            f"{variant}-{w}x{h}-b{self.max_batch}-{self.precision}-trt{self.trt_version}-sm{sm}-"
            f"{self.digest()}.engine"
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
        raise ValueError(
            f"TensorRT precision must be one of {ENGINE_PRECISIONS}, got {precision!r}"
        )
    return EngineKey(
        file_sha256(onnx_path),
        precision,
        env.trt_version,
        env.compute_capability,
        tuple(onnx_meta.input_size),
        int(max_batch),
        calibration_hash if precision == "int8" else "",
    )


def stale_reasons(meta: ArtifactMetadata, env: TargetEnvironment) -> List[str]:
    """Why an engine described by `meta` cannot run in `env` (empty = it can)."""
    reasons = []
    if meta.format != "tensorrt":
        reasons.append(f"it is a {meta.format!r} artifact, not a TensorRT engine")
    built_trt = meta.versions.get("tensorrt", "unknown")
    if built_trt != env.trt_version:
        reasons.append(
            f"built with TensorRT {built_trt}, this process has TensorRT {env.trt_version}"
        )
    built_cc = str(meta.device.get("compute_capability", "unknown"))
    if built_cc != env.compute_capability:
        gpu = f" ({meta.device.get('gpu_name')})" if meta.device.get("gpu_name") else ""
        here = f" ({env.gpu_name})" if env.gpu_name else ""
        reasons.append(
            f"built for compute capability {built_cc}{gpu}, "
            f"this GPU is {env.compute_capability}{here}"
        )
    return reasons


def check_engine(path: PathLike, env: TargetEnvironment) -> ArtifactMetadata:
    """Reads an engine's sidecar and raises ArtifactError naming every mismatch with `env`."""
    meta = read_sidecar(path)
    reasons = stale_reasons(meta, env)
    if reasons:
        source = meta.extra.get("source_onnx")
        hint = (
            f"rebuild it: bevanet-export --onnx {source} --engine {path} "
            f"--precision {meta.precision}"
            if source
            else "rebuild it from its ONNX model with bevanet-export"
        )
        raise ArtifactError(f"{path} cannot run here: {'; '.join(reasons)}; {hint}")
    return meta


def calibration_files(folder: PathLike, limit: Optional[int] = None) -> List[Path]:
    """Sorted image files of a calibration folder (recursive); an empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration image folder not found: {folder}")
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder {folder}")
    return files[:limit] if limit else files


def calibration_hash(files: Sequence[Path], resize: str) -> str:
    """Digest of the calibration set (names, sizes, mtimes) and how it is preprocessed."""
    digest = hashlib.sha256(resize.encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def engine_metadata(
    onnx_meta: ArtifactMetadata,
    onnx_path: PathLike,
    key: EngineKey,
    env: TargetEnvironment,
    extra: Optional[Dict[str, Any]] = None,
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


def _has_qdq(onnx_path: Path) -> bool:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


def make_calibrator(
    files: Sequence[Path],
    onnx_meta: ArtifactMetadata,
    cache_file: Path,
    batch_size: int = 8,
    resize: str = "stretch",
    device_index: int = 0,
):
    """An `IInt8EntropyCalibrator2` fed with real images, preprocessed exactly like at run time."""
    trt = _require_tensorrt()
    import numpy as np
    import torch
    from PIL import Image

    from ..imaging.geometry import plan_resize
    from ..imaging.processing import preprocess

    info = onnx_meta.info
    size = tuple(onnx_meta.input_size)
    device = torch.device("cuda", device_index)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.files, self.batch, self.position = list(files), int(batch_size), 0
            self.buffer = torch.empty(
                (self.batch, 3, size[1], size[0]), dtype=torch.float32, device=device
            )

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names, *unused):  # TensorRT 10: (names); older: (bindings, names)
            if self.position + self.batch > len(self.files):
                return None
            frames = []
            for f in self.files[self.position : self.position + self.batch]:
                frames.append(
                    (torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy()), "rgb8")
                )
            self.position += self.batch
            plans = [
                plan_resize((int(t.shape[1]), int(t.shape[0])), size, resize) for t, _ in frames
            ]
            preprocess(frames, plans, info.mean, info.std, device, torch.float32, out=self.buffer)
            torch.cuda.synchronize(device)
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            data = bytes(cache)
            atomic_write(cache_file, lambda tmp: Path(tmp).write_bytes(data))

    if len(files) < batch_size and not cache_file.is_file():
        raise ValueError(f"int8 calibration needs at least {batch_size} images, got {len(files)}")
    return EntropyCalibrator()


def build_engine(
    onnx_path: PathLike,
    engine_path: PathLike,
    precision: str = "fp16",
    max_batch: int = 1,
    calibration_images: Optional[PathLike] = None,
    calibration_cache: Optional[PathLike] = None,
    calibration_batch: int = 8,
    calibration_limit: Optional[int] = CALIBRATION_LIMIT,
    resize: str = "stretch",
    workspace_gib: float = 4.0,
    device_index: int = 0,
) -> ArtifactMetadata:
    """Builds a TensorRT engine from a bevanet ONNX export; writes it and its sidecar atomically.

    int8: with an ONNX that holds Q/DQ nodes nothing else is needed; otherwise give
    `calibration_images` (a folder of real frames) and/or an existing `calibration_cache`.
    """
    trt = _require_tensorrt()
    import torch

    from .onnx import read_onnx_metadata

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if engine_path.suffix.lower() not in ENGINE_SUFFIXES:
        raise ValueError(f"engine path must end in one of {ENGINE_SUFFIXES}, got {engine_path}")
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(
            f"TensorRT precision must be one of {ENGINE_PRECISIONS}, got {precision!r}"
        )
    onnx_meta = read_onnx_metadata(onnx_path)
    if not onnx_meta.dynamic_batch and max_batch != onnx_meta.batch:
        log.info("%s has a static batch of %d; using it", onnx_path.name, onnx_meta.batch)
        max_batch = onnx_meta.batch
    env = TargetEnvironment.current(device_index)
    weak_typing = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 10; removed in 11
    explicit_int8 = precision == "int8" and _has_qdq(onnx_path)

    files: List[Path] = []
    calib_digest = ""
    cache_file = (
        Path(calibration_cache)
        if calibration_cache
        else engine_path.with_name(engine_path.name + ".calib")
    )
    if precision == "int8" and not explicit_int8:
        if not hasattr(trt, "IInt8EntropyCalibrator2"):
            raise ValueError(
                f"TensorRT {trt.__version__} has no int8 calibrators; "
                "export a Q/DQ-quantized ONNX "
                "(explicit quantization, e.g. NVIDIA ModelOpt) and build from it"
            )
        if calibration_images:
            files = calibration_files(calibration_images, calibration_limit)
            calib_digest = calibration_hash(files, resize)
        elif cache_file.is_file():
            calib_digest = "cache:" + file_sha256(cache_file)[:16]
        else:
            raise ValueError(
                "int8 needs calibration_images (a folder of real frames), an existing "
                "calibration_cache, or an ONNX model with Q/DQ nodes"
            )
    if precision == "fp16" and not weak_typing:
        raise ValueError(
            f"TensorRT {trt.__version__} removed BuilderFlag.FP16 (strong typing only): convert "
            "the ONNX to mixed precision first (ModelOpt AutoCast) and build it with "
            "precision='fp32'"
        )

    key = engine_key(onnx_path, onnx_meta, precision, env, max_batch, calib_digest)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    w, h = onnx_meta.input_size
    name = network.get_input(0).name
    profile = calibrator = None
    if onnx_meta.dynamic_batch:
        profile = builder.create_optimization_profile()
        profile.set_shape(name, (1, 3, h, w), (1, 3, h, w), (max_batch, 3, h, w))
        config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if weak_typing:
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)  # layers without int8 kernels fall back to fp16
        if not explicit_int8:
            # keep a Python reference: the builder config does not own the calibrator object
            calibrator = make_calibrator(
                files, onnx_meta, cache_file, calibration_batch, resize, device_index
            )
            config.int8_calibrator = calibrator
            if profile is not None:
                calib_profile = builder.create_optimization_profile()
                shape = (calibration_batch, 3, h, w)
                calib_profile.set_shape(name, shape, shape, shape)
                config.set_calibration_profile(calib_profile)
    with torch.cuda.device(device_index):
        serialized = builder.build_serialized_network(network, config)
    del calibrator  # the build is over
    if serialized is None:
        raise ArtifactError(
            f"TensorRT failed to build an engine from {onnx_path} ({precision}); see its log above"
        )
    data = bytes(serialized)
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(data))
    extra: Dict[str, Any] = {
        "int8_mode": ("explicit_qdq" if explicit_int8 else "entropy_calibration")
        if precision == "int8"
        else None
    }
    if files:
        extra["calibration_images"] = len(files)
    meta = engine_metadata(onnx_meta, onnx_path, key, env, extra)
    write_sidecar(engine_path, meta)
    log.info("built %s engine %s (%s, %s)", precision, engine_path, env.gpu_name, env.trt_version)
    return meta


def ensure_engine(
    onnx_path: PathLike,
    cache_dir: PathLike,
    precision: str = "fp16",
    max_batch: int = 1,
    calibration_images: Optional[PathLike] = None,
    resize: str = "stretch",
    device_index: int = 0,
) -> Path:
    """The cached engine for this ONNX model, precision and environment, built on first use."""
    from .onnx import read_onnx_metadata

    onnx_path = Path(onnx_path)
    onnx_meta = read_onnx_metadata(onnx_path)
    env = TargetEnvironment.current(device_index)
    if not onnx_meta.dynamic_batch:
        max_batch = onnx_meta.batch
    digest = ""
    if precision == "int8" and calibration_images and not _has_qdq(onnx_path):
        digest = calibration_hash(calibration_files(calibration_images, CALIBRATION_LIMIT), resize)
    key = engine_key(onnx_path, onnx_meta, precision, env, max_batch, digest)
    path = Path(cache_dir) / "engines" / key.filename(onnx_meta.model_info.get("variant", "model"))
    if path.is_file():
        try:
            check_engine(path, env)
            return path
        except ArtifactError as exc:
            log.warning("rebuilding cached engine: %s", exc)
    build_engine(
        onnx_path,
        path,
        precision,
        max_batch,
        calibration_images=calibration_images,
        resize=resize,
        device_index=device_index,
    )
    return path
