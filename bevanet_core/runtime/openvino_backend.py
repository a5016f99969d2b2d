"""OpenVINO backend (CPU): an exported ONNX model or OpenVINO IR (.xml) compiled by OpenVINO, one static-shape
compilation per batch size.

Precisions: fp32; bf16 where the CPU has bf16 arithmetic (OpenVINO's inference precision hint on
the fp32 model); int8 from the same Q/DQ ONNX the other backends take (OpenVINO runs Q/DQ pairs
as int8 kernels); fp16 from the fp16 ONNX where the CPU has fp16 arithmetic. A precision the CPU
cannot run is refused rather than silently executed in another.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from .backend import Backend
from .loading import onnx_to_load

log = logging.getLogger(__name__)

OPENVINO_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# OpenVINO's name for the arithmetic each precision asks the CPU plugin for
_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise ValueError(
            "backend 'openvino' needs the openvino package (pip install openvino, or this package's [openvino] extra)"
        ) from None
    return ov


def cpu_capabilities() -> tuple:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU ('FP32', 'BF16', 'INT8', ...)."""
    ov = _openvino()
    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVINOBackend(Backend):
    """Runs an exported BEVANet ONNX model through OpenVINO on the CPU."""

    name = "openvino"

    def __init__(
        self,
        path: Path,
        device: torch.device,
        precision: str = "fp32",
        num_threads: Optional[int] = None,
    ):
        ov = _openvino()
        from ..export.metadata import read_ir_metadata, read_onnx_metadata

        if device.type != "cpu":
            raise ValueError(
                f"backend 'openvino' runs on the CPU only, got device {str(device)!r}; "
                "use the tensorrt, onnxruntime or torch backend on CUDA"
            )
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(
                f"precision {precision!r} is not supported by the openvino backend; choose one of {OPENVINO_PRECISIONS}"
            )
        self.path = Path(path)
        self.meta = read_ir_metadata(self.path) if self.path.suffix.lower() == ".xml" else read_onnx_metadata(self.path)
        self.device = device
        self.precision = precision
        self.static_input_size = tuple(self.meta.input_size)
        self.max_batch = None if self.meta.dynamic_batch else int(self.meta.batch)
        self.core = ov.Core()
        need = _CAPABILITY.get(precision)
        caps = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if need and need not in caps:
            raise ValueError(
                f"precision {precision!r} needs a CPU with {need} arithmetic; OpenVINO reports "
                f"{', '.join(caps)} for this one "
                f"({self.core.get_property('CPU', 'FULL_DEVICE_NAME')})"
            )
        self.config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if num_threads:
            self.config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            self._model = self.core.read_model(str(self.path))
        except Exception as exc:
            raise ValueError(f"{self.path}: OpenVINO cannot read it ({type(exc).__name__}: {exc})") from None
        self._input = self._model.inputs[0].get_any_name()
        self._compiled: dict[int, object] = {}
        self._compile(self.max_batch or 1)

    def _compile(self, batch: int):
        if batch not in self._compiled:
            ov = _openvino()
            model = self._model.clone()
            w, h = self.static_input_size
            model.reshape({self._input: ov.PartialShape([batch, 3, h, w])})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self._compiled[batch] = compiled.create_infer_request()
            log.debug("compiled %s for batch %d (%s)", self.path.name, batch, self.config)
        return self._compiled[batch]

    @classmethod
    def create(cls, cfg, device: torch.device, model=None, info=None):
        """(backend, ModelInfo) for a SegmenterConfig: an `.onnx` file as it is, or a model
        (in memory or a checkpoint) exported once into the cache directory."""
        path, info = onnx_to_load(cfg, model, info)
        backend = cls(path, device, cfg.precision, cfg.num_threads)
        return backend, backend.meta.info if info is None else info

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        if self.max_batch is not None and n > self.max_batch:
            raise ValueError(f"{self.path.name} takes batches of {self.max_batch}, got {n}")
        request = self._compile(self.max_batch or n)
        if self.max_batch is not None and n < self.max_batch:
            x = torch.cat([x, x.new_zeros((self.max_batch - n,) + tuple(x.shape[1:]))])
        request.infer({0: x.float().contiguous().numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())[:n]

    def close(self) -> None:
        self._compiled.clear()
        self._model = None
