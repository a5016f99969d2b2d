"""Training checkpoints and resuming: model, optimizer, iteration, best mIoU, history, the
average of the weights, RNG states and the resolved config, written atomically, so that a run
killed at any moment resumes where it was.

A run folder belongs to one run at a time (`RunLock`: run.lock holds the pid; the lock of a run
that died is taken over), temporary files a killed checkpoint write left behind are removed when
the next run takes the folder, a failed checkpoint write (a full disk) is one line naming the file
with the last good checkpoint intact, and `--resume` refuses a checkpoint of another network or
recipe naming both."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import ModelInfo
from ..paths import atomic_write
from .averaging import WeightEMA
from .config import TrainConfig


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or resumed; the message names the file."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint write that failed (a full disk); the previous checkpoint is left intact."""


class RunLock:
    """run.lock in a run folder holding the pid of the run that trains there. A second run on the
    folder is refused while that process lives; the lock of a run that died is taken over."""

    NAME = "run.lock"

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / self.NAME
        self.held = False

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner != os.getpid() and _alive(owner):
                    raise CheckpointError(
                        f"run folder {self.path.parent} is in use by the run of pid {owner} ({self.path}); "
                        "wait for it to end or choose another run.out_dir"
                    ) from None
                self.path.unlink(missing_ok=True)  # a dead run's (or this process's own) lock
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return
        raise CheckpointError(f"cannot take the run lock {self.path}: another run took it at the same moment")

    def _owner(self) -> Optional[int]:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None  # unreadable or half written: nobody can be shown to hold it

    def release(self) -> None:
        if self.held and self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Removes the temporary files of checkpoint writes a killed run left in `out_dir` (the
    atomic write's `.<name>.<random>.tmp`); call it holding the run lock. Returns them."""
    stale = [p for p in Path(out_dir).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
    try:
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as exc:
        raise CheckpointWriteError(_write_failure(path, exc)) from None


def _write_failure(path: Path, exc: BaseException) -> str:
    """One line for a failed checkpoint write: the file, the cause and the free space left."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left on the device"
    elif isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
    else:  # torch's zip writer reports a short write as a RuntimeError of its own
        cause = "the write failed (" + (str(exc).strip().splitlines() or ["?"])[-1][:160] + ")"
    kept = " (the previous checkpoint there is intact)" if path.is_file() else ""
    return f"cannot write checkpoint {path}: {cause}, {free}{kept}"


def load_training_checkpoint(path: Path) -> dict:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read training checkpoint {path}: {exc}") from None


# recipe keys a resumed run may change: where things are and how fast they run, and the length of
# the schedule (a run extended by more iterations); every other key must match the checkpoint's
_RESUME_MAY_CHANGE = ("data.", "run.", "model.pretrained", "model.sync_bn", "optim.iterations", "optim.epochs")
_RESUME_MUST_MATCH = ("data.dataset", "data.crop_size", "run.seed", "run.ema_decay")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and not (prefix and key in ("lr_mult",)):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(path: Path, ckpt: dict, cfg: TrainConfig) -> None:
    """Refuses, in one line naming both, a checkpoint of another network (variant, number of
    classes) or another recipe (every key but where data and outputs live, the device and the
    schedule's length) than the one asked for."""
    try:
        recorded = ModelInfo.from_json(ckpt["model_info"])
    except Exception:  # noqa: BLE001 - any malformed record is the same refusal
        raise CheckpointError(
            f"checkpoint {path} records no network (model_info); it is not a bevanet-train checkpoint"
        ) from None
    if (recorded.variant, recorded.num_classes) != (cfg.model.variant, cfg.model.num_classes):
        raise CheckpointError(
            f"checkpoint {path} holds a {recorded.variant} with {recorded.num_classes} classes but the recipe asks "
            f"for a {cfg.model.variant} with {cfg.model.num_classes} classes; resume with the recipe it was "
            "trained with or choose another run.out_dir"
        )
    if not isinstance(ckpt.get("config"), dict):
        return
    theirs, ours = _flatten(ckpt["config"]), _flatten(cfg.to_dict())
    differ = [
        key
        for key in sorted(set(theirs) | set(ours))
        if theirs.get(key) != ours.get(key)
        and (key in _RESUME_MUST_MATCH or not key.startswith(_RESUME_MAY_CHANGE))
        and key in theirs  # a key added to the recipe format since the checkpoint was written
    ]
    if differ:
        shown = ", ".join(f"{k}={theirs.get(k)!r} there vs {ours.get(k)!r} asked" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise CheckpointError(
            f"checkpoint {path} was trained with another recipe: {shown}{more}; resume with the recipe "
            "it was trained with or choose another run.out_dir"
        )


def resume_run(trainer, resume: Optional[str]) -> None:
    """`resume`: a checkpoint path, or 'auto' for <out_dir>/last.pt if present."""
    path = trainer.out_dir / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
    if path is None or not path.is_file():
        if resume not in (None, "auto"):
            raise FileNotFoundError(f"checkpoint to resume not found: {resume}")
        return
    ckpt = load_training_checkpoint(path)
    check_resumable(path, ckpt, trainer.cfg)
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
