"""Training checkpoints and resuming: model, optimizer, iteration, best mIoU, history, the
average of the weights, RNG states and the resolved config, written atomically, so that a run
killed at any moment resumes where it was."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import ModelInfo
from ..paths import atomic_write
from .averaging import WeightEMA
from .config import TrainConfig


def _rng_state() -> dict:
    """RNG states as tensors and plain values, so the checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "python": [version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state.tolist()), py_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer,
    iteration: int,
    best_miou: float,
    cfg: TrainConfig,
    info: ModelInfo,
    history: list[dict],
    ema: Optional[WeightEMA] = None,
) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "best_miou": best_miou,
        "config": cfg.to_dict(),
        "model_info": info.to_json(),
        "rng": _rng_state(),
        "history": history,
        "format": "bevanet-train-v1",
    }
    if ema is not None:
        payload["ema"] = ema.state_dict()
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_training_checkpoint(path: Path) -> dict:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read training checkpoint {path}: {exc}") from None


def resume_run(trainer, resume: Optional[str]) -> None:
    """`resume`: a checkpoint path, or 'auto' for <out_dir>/last.pt if present."""
    path = trainer.out_dir / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
    if path is None or not path.is_file():
        if resume not in (None, "auto"):
            raise FileNotFoundError(f"checkpoint to resume not found: {resume}")
        return
    ckpt = load_training_checkpoint(path)
    trainer.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.iteration, trainer.best_miou = ckpt["iteration"], ckpt["best_miou"]
    trainer.history = ckpt.get("history", [])
    _set_rng_state(ckpt["rng"])
    if trainer.ema is not None:
        if "ema" in ckpt:
            trainer.ema.load_state_dict(ckpt["ema"])
        else:  # a checkpoint of a run without the average: start it here
            trainer.ema = WeightEMA(trainer.model, trainer.cfg.run.ema_decay)
    if trainer.dinfo.is_main:
        print(f"resumed from {path} at iteration {trainer.iteration}/{trainer.max_iter}", flush=True)
