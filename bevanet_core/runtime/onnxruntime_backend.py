"""ONNX Runtime backend: CPU, or the CUDA execution provider with torch CUDA tensors bound
as I/O buffers (no host round trip)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .backend import Backend
from .loading import onnx_to_load

log = logging.getLogger(__name__)

# precision lives in the ONNX file: fp16-typed graphs and int8 Q/DQ graphs (export/precision.py)
ORT_PRECISIONS = ("fp32", "fp16", "int8")


class OnnxRuntimeBackend(Backend):
    """Runs an exported BEVANet ONNX model (static H x W; static or dynamic batch)."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: torch.device, num_threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(
                "backend 'onnxruntime' needs the onnxruntime package "
                "(pip install onnxruntime, or onnxruntime-gpu for CUDA)"
            ) from None
        from ..export.metadata import read_onnx_metadata

        self.path = Path(path)
        self.meta = read_onnx_metadata(self.path)
        self.device = device
        self.static_input_size = tuple(self.meta.input_size)
        self.max_batch = None if self.meta.dynamic_batch else int(self.meta.batch)
        self.num_classes = int(self.meta.model_info["num_classes"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    "device 'cuda' with backend 'onnxruntime' needs onnxruntime-gpu "
                    f"(available providers: {ort.get_available_providers()})"
                )
            providers = [
                ("CUDAExecutionProvider", {"device_id": device.index or 0}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ValueError(f"{self.path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        # static export: the graph's own output size (1/8 or, for BSSNet-B, 1/4 of the input)
        self.output_hw = tuple(int(d) for d in self.session.get_outputs()[0].shape[2:])

    @classmethod
    def create(cls, cfg, device: torch.device, model=None, info=None):
        """(backend, ModelInfo) for a SegmenterConfig: an `.onnx` file as it is, or a model
        (in memory or a checkpoint) exported once into the cache directory."""
        if cfg.precision not in ORT_PRECISIONS:
            raise ValueError(
                f"precision {cfg.precision!r} is not supported by the onnxruntime backend; "
                f"choose one of {ORT_PRECISIONS} (bf16: torch or openvino backend)"
            )
        path, info = onnx_to_load(cfg, model, info)
        backend = cls(path, device, cfg.num_threads)
        return backend, backend.meta.info if info is None else info

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.max_batch is not None and n != self.max_batch:
            if n > self.max_batch:
                raise ValueError(f"{self.path.name} takes batches of {self.max_batch}, got {n}")
            pad = x.new_zeros((self.max_batch - n,) + tuple(x.shape[1:]))
            return self.infer(torch.cat([x, pad]))[:n]
        x = x.float().contiguous()
        if self.device.type == "cuda":
            return self._infer_cuda(x)
        out = self.session.run([self.output_name], {self.input_name: x.cpu().numpy()})[0]
        return torch.from_numpy(out)

    def _infer_cuda(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty(
            (x.shape[0], self.num_classes, *self.output_hw),
            dtype=torch.float32,
            device=self.device,
        )
        binding = self.session.io_binding()
        index = self.device.index or 0
        binding.bind_input(self.input_name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # x is written on torch's stream
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out

    def close(self) -> None:
        self.session = None
