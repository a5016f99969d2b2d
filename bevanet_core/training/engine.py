"""The training loop: `Trainer` sets a run up, resumes it and runs `fit`, the loop of `step`s
with logging (run_log.py), checkpoints (checkpointing.py) and validation (validation.py); what a
run is built from is in build.py, the multi-process parts in distributed.py.

Runs on one process or under `torchrun` (DistributedDataParallel; NCCL on GPUs, gloo on CPU).
A run killed at any moment resumes where it was: checkpoints are written atomically and hold
model, optimizer, iteration, best mIoU, RNG states and the resolved config; the data order and
every augmentation are pure functions of (seed, epoch, index), so the resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..checkpoint import ModelInfo
from ..hardware import cpu_info, resolve_precision
from .averaging import WeightEMA
from .build import (
    autocast_context,
    build_criterion,
    build_datasets,
    build_optimizer,
    build_training_model,
    poly_lr,
    resolve_device,
)
from .checkpointing import RunLock, remove_stale_temporaries, resume_run, save_training_checkpoint
from .class_weights import resolve_class_weights
from .config import TrainConfig, save_config
from .distributed import ResumableBatchSampler, agreed_max, init_distributed
from .plateau import is_flat, window_gain
from .run_log import Logger, log_progress
from .validation import validate_run


class Trainer:
    """One training run: set-up (the constructor), `resume`, and `fit`, the loop of `step`s with
    logging, checkpoints and validation."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        device = resolve_device(cfg.run.device)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        self.dinfo = dinfo = init_distributed(device.type)
        if device.type == "cuda":
            device = torch.device("cuda", dinfo.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        requested = cfg.run.precision
        cfg.run.precision = resolve_precision(requested, device.type)
        if dinfo.is_main and requested == "auto":
            where = cpu_info().describe() if device.type == "cpu" else torch.cuda.get_device_name(device)
            print(f"precision auto -> {cfg.run.precision} on {where}", flush=True)
        self.out_dir = Path(cfg.run.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(self.out_dir)
        if dinfo.is_main:  # one run per run folder; what a killed checkpoint write left is removed
            self.lock.acquire()
            for stale in remove_stale_temporaries(self.out_dir):
                print(f"removed {stale}, the temporary file of a checkpoint write that was cut short", flush=True)
        torch.manual_seed(cfg.run.seed + dinfo.rank)
        np.random.seed(cfg.run.seed + dinfo.rank)
        random.seed(cfg.run.seed + dinfo.rank)

        self.train_set, self.val_set = build_datasets(cfg)
        if self.train_set.num_classes != cfg.model.num_classes:
            raise ValueError(
                f"dataset {cfg.data.dataset} has {self.train_set.num_classes} classes but "
                f"model.num_classes={cfg.model.num_classes}"
            )
        self.info = ModelInfo(
            variant=cfg.model.variant,
            num_classes=cfg.model.num_classes,
            class_names=list(self.train_set.class_names),
            palette=[list(c) for c in self.train_set.palette],
            input_size=None,
            dataset=cfg.data.dataset,
            # what the weights learnt from and were chosen on: bevanet-eval notes an evaluation on
            # frames the model trained on
            extra={
                "trained_on": cfg.data.train_list or cfg.data.train_split,
                "validated_on": cfg.data.val_list or cfg.data.val_split,
            },
        )
        self.model = build_training_model(cfg, device, dinfo)
        self.class_weights = resolve_class_weights(cfg.data.class_weights, self.train_set)
        if dinfo.is_main and isinstance(cfg.data.class_weights, str):
            print(
                f"class weights ({cfg.data.class_weights}): "
                + ", ".join(
                    f"{name} {w:g}" for name, w in zip(self.train_set.class_names, self.class_weights, strict=True)
                ),
                flush=True,
            )
        self.criterion = build_criterion(cfg, self.class_weights).to(device)
        self.optimizer = build_optimizer(self.model, cfg.optim)

        self.batches = ResumableBatchSampler.batches_per_epoch(
            len(self.train_set), cfg.optim.batch_size, dinfo.world_size
        )
        if self.batches == 0:
            raise ValueError(
                f"{len(self.train_set)} training images are fewer than one batch of "
                f"{cfg.optim.batch_size} x {dinfo.world_size} processes"
            )
        self.max_iter = cfg.optim.iterations or (cfg.optim.epochs or 1) * self.batches
        self.iteration, self.best_miou, self.history = cfg.run.start_iteration, -1.0, []
        if not 0 <= self.iteration < self.max_iter:
            raise ValueError(
                f"run.start_iteration={self.iteration} is outside the schedule of {self.max_iter} iterations"
            )
        self.ema = WeightEMA(self.model, cfg.run.ema_decay) if cfg.run.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda") if cfg.run.precision == "fp16" else None
        self.budget_s = 60.0 * cfg.run.time_budget_min
        self.t0 = time.time()

    # ------------------------------------------------------------------ resume and checkpoints

    def resume(self, resume: Optional[str]) -> None:
        """`resume`: a checkpoint path, or 'auto' for <out_dir>/last.pt if present."""
        resume_run(self, resume)

    def checkpoint(self, kind: str = "last") -> None:
        if self.dinfo.is_main:
            save_training_checkpoint(
                self.out_dir / f"{kind}.pt",
                self.model,
                self.optimizer,
                self.iteration,
                self.best_miou,
                self.cfg,
                self.info,
                self.history,
                self.ema,
            )

    # ------------------------------------------------------------------ schedule

    def schedule_position(self) -> int:
        """The iteration the schedule is at: with a time budget, the elapsed share counts too."""
        if not self.budget_s:
            return self.iteration
        elapsed = int(self.max_iter * (time.time() - self.t0) / self.budget_s)
        return int(agreed_max(max(self.iteration, min(self.max_iter, elapsed)), self.device))  # one LR on every rank

    def out_of_time(self) -> bool:
        """True once the budget is spent on any rank (all ranks agree, and stop together)."""
        return bool(self.budget_s) and bool(agreed_max(time.time() - self.t0 >= self.budget_s, self.device))

    def flat(self) -> bool:
        """Whether the validated curve has risen less than `run.plateau_gain` over the last
        `run.plateau_window` iterations (never, without a window). Read from the history, which
        every rank holds alike and checkpoints keep, so a resumed flat run stays ended."""
        run = self.cfg.run
        return bool(run.plateau_window) and is_flat(self.history, run.plateau_window, run.plateau_gain)

    def end_flat(self, logger: Logger) -> dict:
        """Ends the run on its flat curve: says so, in the log too, and returns the result."""
        run = self.cfg.run
        gain = window_gain(self.history, run.plateau_window)
        logger.log(
            {"val/plateau_gain": gain},
            self.iteration,
            f"[val] the validated mIoU rose {gain:+.2f} over the last {run.plateau_window} iterations, "
            f"under run.plateau_gain {run.plateau_gain:g}: the curve is flat and the run ends at "
            f"iteration {self.iteration} of {self.max_iter}",
        )
        logger.close()
        return self.result(self.history[-1]["val_miou"], plateau=True)

    # ------------------------------------------------------------------ the loop

    def step(self, net: nn.Module, images, labels, edges) -> tuple[dict[str, torch.Tensor], float]:
        """One optimisation step; returns the loss terms and the learning rate used."""
        cfg, o, device = self.cfg, self.cfg.optim, self.device
        lr = poly_lr(
            o.lr,
            self.schedule_position(),
            self.max_iter,
            o.power,
            o.min_lr,
            o.warmup_iters,
            o.warmup_ratio,
            o.warmup_mode,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)  # checkpoints before lr_mult: 1
        images = images.to(device, non_blocking=True)
        if cfg.run.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels, edges = labels.to(device, non_blocking=True), edges.to(device, non_blocking=True)
        with autocast_context(device, cfg.run.precision):
            outputs = net(images)
        losses = self.criterion(outputs, labels, edges)
        # checked before the step, so that a non-finite loss never reaches the weights (or the average)
        if not torch.isfinite(losses["loss"]):
            hint = (
                f"; with run.precision={cfg.run.precision} try fp32"
                if cfg.run.precision != "fp32"
                else "; try a lower optim.lr"
            )
            raise FloatingPointError(f"loss became {losses['loss'].item()} at iteration {self.iteration}{hint}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses["loss"].backward()
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iteration += 1
        return losses, lr

    def validate(self, logger: Logger) -> float:
        return validate_run(self, logger)

    def fit(self, stop_after: Optional[int] = None) -> dict:
        """Trains to the end of the schedule (or of the time budget), then validates.
        `stop_after`: stop (checkpointed) after this many iterations of this call, for tests."""
        cfg, dinfo = self.cfg, self.dinfo
        net = self.model
        if dinfo.world_size > 1:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if dinfo.is_main:
            save_config(cfg, self.out_dir / "config.yaml")
        logger = Logger(self.out_dir, dinfo.is_main)
        net.train()
        start_iter, self.t0 = self.iteration, time.time()
        done_this_call, time_spent = 0, False
        if self.flat():  # ended on a flat curve before, and resumed
            return self.end_flat(logger)
        while self.iteration < self.max_iter and not time_spent:
            epoch, start_batch = divmod(self.iteration, self.batches)
            self.train_set.epoch = epoch
            sampler = ResumableBatchSampler(
                len(self.train_set),
                cfg.optim.batch_size,
                cfg.run.seed,
                epoch,
                dinfo.rank,
                dinfo.world_size,
                start_batch,
            )
            loader = DataLoader(
                self.train_set,
                batch_sampler=sampler,
                num_workers=cfg.data.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=False,
            )
            for images, labels, edges in loader:
                losses, lr = self.step(net, images, labels, edges)
                done_this_call += 1
                it = self.iteration
                if it % cfg.run.log_every == 0 or it == self.max_iter:
                    log_progress(self, logger, losses, lr, epoch, start_iter)
                if cfg.run.checkpoint_every and it % cfg.run.checkpoint_every == 0:
                    self.checkpoint()
                if cfg.run.val_every and it % cfg.run.val_every == 0 and it < self.max_iter:
                    self.validate(logger)
                    self.checkpoint()
                    if self.flat():
                        return self.end_flat(logger)
                if stop_after is not None and done_this_call >= stop_after:
                    self.checkpoint()
                    logger.close()
                    return {"iteration": it, "best_miou": self.best_miou, "history": self.history, "stopped": True}
                time_spent = self.out_of_time()
                if it >= self.max_iter or time_spent:
                    break
        final = self.validate(logger)
        self.checkpoint()
        logger.close()
        return self.result(final)

    def result(self, final: float, **more) -> dict:
        return {
            "iteration": self.iteration,
            "best_miou": self.best_miou,
            "final_miou": final,
            "history": self.history,
            **more,
        }


def train(cfg: TrainConfig, resume: Optional[str] = None, stop_after: Optional[int] = None) -> dict:
    """Trains per `cfg`. `resume`: a checkpoint path, or 'auto' for <out_dir>/last.pt if present.
    `stop_after`: stop (checkpointed) after this many iterations of this call, for tests."""
    trainer = Trainer(cfg)
    try:
        trainer.resume(resume)
        return trainer.fit(stop_after)
    finally:
        trainer.lock.release()
