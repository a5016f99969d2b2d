"""PyTorch backend: eager on the CPU; on CUDA fp16/bf16, channels_last, folded BatchNorm,
CUDA graphs (one per batch size) and optionally torch.compile."""

from __future__ import annotations

import copy
import logging
from typing import Optional

import torch
import torch.nn as nn

from .backend import TORCH_DTYPES, Backend

log = logging.getLogger(__name__)

CPU_PRECISIONS = ("fp32", "bf16")
CUDA_PRECISIONS = ("fp32", "fp16", "bf16")


class TorchBackend(Backend):
    """Runs an `nn.Module` returning logits. The caller's module is never modified."""

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        precision: str = "fp32",
        fold_bn: bool = True,
        channels_last: Optional[bool] = None,
        cuda_graphs: Optional[bool] = None,
        compile: bool = False,
        num_threads: Optional[int] = None,
    ):
        allowed = CUDA_PRECISIONS if device.type == "cuda" else CPU_PRECISIONS
        if precision not in allowed:
            hint = ""
            if precision == "int8":
                hint = " (int8: the onnxruntime, openvino or tensorrt backend)"
            raise ValueError(
                f"precision {precision!r} is not supported by the torch backend on "
                f"{device.type}; choose one of {allowed}{hint}"
            )
        if num_threads:
            torch.set_num_threads(int(num_threads))  # process-wide: torch has no per-model pool
        self.device = device
        self.precision = precision
        self.input_dtype = TORCH_DTYPES[precision]
        on_cuda = device.type == "cuda"
        self.channels_last = on_cuda if channels_last is None else bool(channels_last)
        self.cuda_graphs = on_cuda if cuda_graphs is None else bool(cuda_graphs) and on_cuda
        self.fold_report = None

        model = copy.deepcopy(model).eval()
        if getattr(model, "aux_heads", False) and hasattr(model, "without_aux_heads"):
            model.without_aux_heads()
        if fold_bn:
            from ..deploy import fold_batchnorm

            model, self.fold_report = fold_batchnorm(model, return_report=True)
        for p in model.parameters():
            p.requires_grad_(False)
        model = model.to(device=device, dtype=self.input_dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if compile:
            model = torch.compile(model, dynamic=False)
        self.model = model
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.input_dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        if not self.cuda_graphs:
            return self.model(x)
        key = tuple(x.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        # the graph owns static_out: the caller consumes it before the next infer() call
        return static_out

    def _capture(self, x: torch.Tensor):
        """Warms up on a side stream (cuDNN autotuning, compile), then records one CUDA graph."""
        static_in = x.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.model(static_in)
        log.debug("captured a CUDA graph for input %s", tuple(x.shape))
        return graph, static_in, static_out

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
