"""TensorRT backend (TensorRT 10 API): I/O buffers are torch CUDA tensors, inference is enqueued
with `execute_async_v3` on torch's current CUDA stream, so no pycuda and no extra copies."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .backend import Backend
from .loading import onnx_to_load, request_artifact

log = logging.getLogger(__name__)


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT8: torch.int8,
        trt.DataType.INT32: torch.int32,
    }
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dtype not in table:
        raise ValueError(f"unsupported TensorRT I/O data type {dtype}")
    return table[dtype]


class TensorRTBackend(Backend):
    """Runs a serialized engine: one input (N x 3 x H x W), one output (N x C x H/8 x W/8)."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, device: torch.device, meta):
        import tensorrt as trt

        self.path, self.meta, self.device = Path(engine_path), meta, device
        self.static_input_size = tuple(meta.input_size)
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ValueError(
                    f"{self.path}: TensorRT {trt.__version__} could not deserialize the engine "
                    "(built by another TensorRT version or for another GPU?); rebuild it"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.path}: expected one input and one output tensor, got {inputs} / {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        self.output_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output_name))
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if shape[0] == -1:  # dynamic batch: the max of optimisation profile 0
            self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
            self._static_batch = None
        else:
            self.max_batch = self._static_batch = int(shape[0])
        self._outputs: dict[tuple[int, ...], torch.Tensor] = {}

    @classmethod
    def create(cls, cfg, device: torch.device, model=None, info=None):
        """(backend, ModelInfo): an engine file (checked against this GPU/TensorRT), or an ONNX
        model / checkpoint / in-memory model compiled once into the engine cache."""
        if device.type != "cuda":
            raise ValueError("backend 'tensorrt' needs device='cuda' (TensorRT runs on NVIDIA GPUs only)")
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise ValueError(
                "backend 'tensorrt' needs the tensorrt package (pip install tensorrt); "
                "use backend='torch' or 'onnxruntime' otherwise"
            ) from None
        from ..export.metadata import ArtifactError
        from ..export.tensorrt import ENGINE_SUFFIXES, TargetEnvironment, check_engine

        if cfg.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(
                f"precision {cfg.precision!r} is not supported by the tensorrt backend; "
                "choose fp32, fp16 or int8 (the ONNX carries it: strongly typed builds)"
            )
        weights = Path(cfg.weights) if cfg.weights else None
        suffix = weights.suffix.lower() if weights is not None else ""
        index = device.index or 0
        if model is None and suffix in ENGINE_SUFFIXES:
            env = TargetEnvironment.current(index)
            try:
                meta = check_engine(weights, env)
                engine = weights
            except ArtifactError as exc:
                source = _source_onnx(weights)
                if not cfg.rebuild_stale_engine or source is None:
                    raise
                log.warning("%s; rebuilding from %s into the cache", exc, source)
                engine = request_artifact("engine", cfg, source=source, device_index=index)
                meta = check_engine(engine, env)
            backend = cls(engine, device, meta)
            return backend, meta.info
        onnx_path, _ = onnx_to_load(cfg, model, info)
        engine = request_artifact("engine", cfg, source=onnx_path, device_index=index)
        meta = check_engine(engine, TargetEnvironment.current(index))
        return cls(engine, device, meta), meta.info

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self._static_batch is not None and n < self._static_batch:
            pad = x.new_zeros((self._static_batch - n,) + tuple(x.shape[1:]))
            return self.infer(torch.cat([x, pad]))[:n]
        if n > self.max_batch:
            raise ValueError(f"{self.path.name} takes at most {self.max_batch} frames per batch, got {n}")
        x = x.to(self.device, self.input_dtype).contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = self._outputs.get(shape)
        if out is None:
            out = self._outputs[shape] = torch.empty(shape, dtype=self.output_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        # enqueue on torch's stream: ordered after preprocessing, before postprocessing
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path.name}: TensorRT execute_async_v3 failed")
        return out  # reused per shape: consumed before the next infer()

    def close(self) -> None:
        self._outputs.clear()
        self.context = None
        self.engine = None
        self._runtime = None


def _sidecar(engine: Path):
    """The engine's sidecar metadata, or None when it is missing or unreadable."""
    from ..export.metadata import read_sidecar

    try:
        return read_sidecar(engine, verify_hash=False)  # a stale engine may still be whole
    except (OSError, ValueError):  # ArtifactError is a ValueError
        return None


def _source_onnx(engine: Path):
    """The ONNX model an engine was built from, if its sidecar names one that still exists."""
    meta = _sidecar(engine)
    source = meta.extra.get("source_onnx") if meta is not None else None
    return Path(source) if source and Path(source).is_file() else None
