"""What a run reports: console progress (loss, LR, speed, ETA), a JSON-lines log and TensorBoard,
on rank 0 only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional


class Logger:
    """Console progress (loss, LR, speed, ETA), JSON-lines log file and TensorBoard, rank 0 only."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.enabled = enabled
        self.file = open(out_dir / "train.log.jsonl", "a") if enabled else None
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                pass

    def log(self, record: dict, step: int, console: Optional[str] = None) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"iteration": step, "time": time.time(), **record}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, step)
        if console:
            print(console, flush=True)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def log_progress(trainer, logger: Logger, losses, lr: float, epoch: int, start_iter: int) -> None:
    """The loss terms, learning rate and speed of the last step, with the time still to go."""
    speed = (time.time() - trainer.t0) / max(trainer.iteration - start_iter, 1)
    eta = speed * (trainer.max_iter - trainer.iteration)
    record = {f"train/{k}": float(v.detach()) for k, v in losses.items()}
    record.update({"train/lr": lr, "train/s_per_iter": speed, "epoch": epoch})
    logger.log(
        record,
        trainer.iteration,
        f"[train] {trainer.iteration}/{trainer.max_iter} epoch {epoch} loss {losses['loss'].item():.4f} "
        f"lr {lr:.2e} {speed:.2f} s/it ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}",
    )
