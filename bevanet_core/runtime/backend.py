"""The small interface every inference backend implements."""

from __future__ import annotations

from typing import Optional

import torch

from ..options import PRECISIONS  # noqa: F401 - part of this module's interface

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Backend:
    """Maps a normalised N x 3 x H x W float tensor to N x C x H/8 x W/8 logits on `device`."""

    name = "base"
    device: torch.device = torch.device("cpu")
    input_dtype: torch.dtype = torch.float32
    max_batch: Optional[int] = None  # None = any batch size
    static_input_size: Optional[tuple[int, int]] = None  # (W, H) fixed by an exported artifact

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Frees the backend's resources; it cannot be used afterwards."""


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' -> torch.device, with a clear error when CUDA is missing."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but this PyTorch build has no usable CUDA (torch {torch.__version__})"
            )
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def load_checkpoint(weights: Optional[str], variant: Optional[str], allow_nonfinite: bool = False):
    """(eval model, ModelInfo) from a checkpoint (None = the shipped default model)."""
    from ..checkpoint import load_model

    return load_model(weights, variant=variant, allow_nonfinite=allow_nonfinite)
