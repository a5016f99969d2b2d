"""The training loop: datasets, criterion, poly LR, train, evaluate, checkpoint, resume.

Runs on one process or under `torchrun` (DistributedDataParallel; NCCL on GPUs, gloo on CPU).
A run killed at any moment resumes where it was: checkpoints are written atomically and hold
model, optimizer, iteration, best mIoU, RNG states and the resolved config; the data order and
every augmentation are pure functions of (seed, epoch, index), so the resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from ..checkpoint import ModelInfo, load_state_dict_strict, read_checkpoint, save_weights
from ..data.datasets import build_dataset
from ..data.transforms import EvalTransform, TrainTransform
from ..evaluation.metrics import ConfusionMatrix
from ..hardware import cpu_info, resolve_precision
from ..models import build_model
from ..models.layers import dilated_depthwise_convs
from ..options import logits_align_corners
from ..paths import atomic_write
from .class_weights import resolve_class_weights
from .config import TrainConfig, save_config
from .losses import BEVANetCriterion, LossWeights
from .objective import TrainingObjective


def poly_lr(
    base_lr: float,
    iteration: int,
    max_iterations: int,
    power: float = 0.9,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
    warmup_mode: str = "linear",
) -> float:
    """Polynomial decay per iteration (PIDNet/BEVANet: no warm-up, min_lr 0), optionally with a
    warm-up: over the first `warmup_iters` the poly value is scaled from `warmup_ratio` to 1,
    linearly (mmseg) or geometrically (STDC-Seg: warmup_ratio ** (1 - i / warmup_iters))."""
    lr = (base_lr - min_lr) * (1.0 - iteration / max_iterations) ** power + min_lr
    if iteration < warmup_iters:
        progress = iteration / warmup_iters
        if warmup_mode == "linear":
            lr *= 1.0 - (1.0 - progress) * (1.0 - warmup_ratio)
        elif warmup_mode == "exp":
            lr *= warmup_ratio ** (1.0 - progress)
        else:
            raise ValueError(f"optim.warmup_mode must be 'linear' or 'exp', got {warmup_mode!r}")
    return lr


def lr_multiplier(name: str, lr_mult: dict[str, float]) -> float:
    """The multiplier of the longest prefix of `name` in `lr_mult` ("" matches all), else 1."""
    best = max((p for p in lr_mult if name.startswith(p)), key=len, default=None)
    return 1.0 if best is None else float(lr_mult[best])


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over parameter groups of equal learning-rate multiplier
    (`optim.lr_mult`) and weight decay (0 for names containing an `optim.no_decay` key); each
    group keeps its multiplier as `lr_mult` for the schedule."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = 0.0 if any(key in name for key in cfg.no_decay) else cfg.weight_decay
            groups.setdefault((lr_multiplier(name, cfg.lr_mult), decay), []).append(param)
    param_groups = [
        {"params": ps, "lr_mult": mult, "lr": cfg.lr * mult, "weight_decay": decay}
        for (mult, decay), ps in sorted(groups.items())
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name must be 'sgd' or 'adamw', got {cfg.name!r}")


# --------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Initialises torch.distributed from torchrun's environment variables, if present."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class ResumableBatchSampler(Sampler):
    """Batches of (index, augmentation seed) for one epoch, shuffled by (seed, epoch), split
    across ranks, skipping the first `start_batch` batches when resuming mid-epoch."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        shuffle: bool = True,
    ):
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.rank, self.world_size, self.start_batch, self.shuffle = rank, world_size, start_batch, shuffle

    @staticmethod
    def batches_per_epoch(size: int, batch_size: int, world_size: int = 1) -> int:
        return size // (batch_size * world_size)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[list[tuple]]:
        order = self._order()
        n = self.batches_per_epoch(self.size, self.batch_size, self.world_size)
        per_rank = order[self.rank : n * self.batch_size * self.world_size : self.world_size]
        for b in range(self.start_batch, n):
            yield [(i, (self.seed, self.epoch, i)) for i in per_rank[b * self.batch_size : (b + 1) * self.batch_size]]

    def __len__(self) -> int:
        return self.batches_per_epoch(self.size, self.batch_size, self.world_size) - self.start_batch


# --------------------------------------------------------------------------- builders


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' requested but CUDA is not available")
    return torch.device(name)


def build_datasets(cfg: TrainConfig):
    d = cfg.data
    root = Path(d.root)
    train_tf = TrainTransform(
        base_size=d.base_size,
        crop_size=tuple(d.crop_size),
        scale_min=d.scale_min,
        scale_max=d.scale_max,
        scale_step=d.scale_step,
        flip=d.flip,
        edge_border=d.edge_border,
        photometric=d.photometric,
    )
    lists = {k: (root / v if v else None) for k, v in (("train", d.train_list), ("val", d.val_list))}
    train = build_dataset(d.dataset, root, lists["train"], d.train_split, train_tf, d.encoding, cfg.run.seed)
    val = build_dataset(d.dataset, root, lists["val"], d.val_split, EvalTransform(), d.encoding, cfg.run.seed)
    return train, val


def build_criterion(cfg: TrainConfig, class_weights: Optional[list[float]] = None) -> TrainingObjective:
    """The objective of the model's family (BEVANet/PIDNet from `cfg.loss`, BiSeNetV2, STDC,
    BSSNet (OHEM settings from `cfg.loss`), Light-Ham). `class_weights`: resolved from
    `cfg.data.class_weights` (resolve_class_weights); an explicit list in the config is used as is."""
    lc = cfg.loss
    if class_weights is None:
        if isinstance(cfg.data.class_weights, str):  # never dropped silently
            raise ValueError(
                f"data.class_weights={cfg.data.class_weights!r} is a scheme: resolve it from the "
                "training labels first (resolve_class_weights) and pass the weights"
            )
        class_weights = cfg.data.class_weights
    return TrainingObjective(
        BEVANetCriterion(
            ignore_index=255,
            ohem_thresh=lc.ohem_thresh,
            ohem_min_kept=lc.ohem_min_kept,
            class_weights=class_weights,
            weights=LossWeights(lc.aux, lc.main, lc.boundary, lc.boundary_guided, lovasz=lc.lovasz),
        )
    )


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 mixed precision needs CUDA; use bf16 on the CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")


def keep_dilated_depthwise_convs_nchw(model: nn.Module) -> list[str]:
    """Lets a channels-last model train in bf16 on the CPU: every dilated depthwise conv gets
    its input, weight and output gradient as contiguous NCHW, since the CPU's bf16 weight gradient of
    such a conv (oneDNN, torch 2.13) is wrong for channels-last inputs from 30x30 or 64x64 up, silently (VAN's LKA:
    over 100% off, then NaN; `layers.channel_layer_norm`). Every other conv stays channels-last.
    Returns the names of the convs so kept."""
    kept = []
    for name, conv in dilated_depthwise_convs(model):
        # the wrong kernel is reached through any channels-last operand: input, weight or the
        # gradient arriving from the channels-last layers after it
        # (a depthwise weight's size-1 dimension makes channels-last strides count as
        # contiguous, so .contiguous() would keep them: copy into standard strides)
        conv.weight.data = torch.empty(conv.weight.shape, dtype=conv.weight.dtype, device=conv.weight.device).copy_(
            conv.weight.data
        )
        conv.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
        conv.register_full_backward_pre_hook(
            lambda module, grads: tuple(None if g is None else g.contiguous() for g in grads)
        )
        kept.append(name)
    return kept


def main_logits(outputs) -> torch.Tensor:
    return outputs.main if isinstance(outputs, tuple) else outputs


@torch.no_grad()
def predict_logits(model: nn.Module, image: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Full-image logits at the input size: pad to a multiple of 8, run, upsample (with the
    model family's `options.logits_align_corners`, as inference does), crop."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    x = F.pad(image, (0, pw, 0, ph)) if (ph or pw) else image
    logits = main_logits(model(x))
    logits = F.interpolate(logits.float(), size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
    return logits[..., :h, :w]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    device: torch.device,
    num_classes: int,
    precision: str = "fp32",
    limit: Optional[int] = None,
    dist_info: Optional[DistInfo] = None,
    channels_last: bool = False,
    *,
    align_corners: bool,
) -> ConfusionMatrix:
    """Single scale, full image, batch 1, no flip; confusion matrices summed over ranks.
    `align_corners`: the model family's `options.logits_align_corners`."""
    dist_info = DistInfo() if dist_info is None else dist_info
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(dist_info.rank, n, dist_info.world_size):
        image, label = dataset[i]
        x = image.unsqueeze(0).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            pred = predict_logits(model, x, align_corners).argmax(1)[0]
        cm.update(pred.cpu(), label)
    if dist_info.world_size > 1:
        t = torch.from_numpy(np.concatenate([cm.matrix.ravel(), cm.missed])).to(device)
        dist.all_reduce(t)
        t = t.cpu().numpy()
        cm.matrix = t[: num_classes**2].reshape(num_classes, num_classes)
        cm.missed = t[num_classes**2 :]
    model.train(was_training)
    return cm


class WeightEMA:
    """Exponential moving average of a model's parameters and buffers (Polyak averaging).

    The average starts as a copy of the model; its decay ramps up as min(decay, (1 + n) / (10 + n))
    over the first updates, so that a run from scratch is not averaged with its random start.
    Integer buffers (BatchNorm's batch counter) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"run.ema_decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, updates
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floats, sources = [], []
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.is_floating_point():
                floats.append(avg)
                sources.append(cur.detach())
            else:
                avg.copy_(cur)
        torch._foreach_lerp_(floats, sources, 1.0 - d)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


# --------------------------------------------------------------------------- checkpoints


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


# --------------------------------------------------------------------------- training


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


def build_training_model(cfg: TrainConfig, device: torch.device, dinfo: DistInfo) -> nn.Module:
    """The network with its training heads: initial weights, SyncBN, device and memory layout."""
    model = build_model(cfg.model.variant, num_classes=cfg.model.num_classes, aux_heads=True)
    if cfg.model.pretrained:
        state, _ = read_checkpoint(cfg.model.pretrained)
        report = load_state_dict_strict(model, state, cfg.model.pretrained, strict=False)
        if dinfo.is_main:
            print(
                f"initialised from {cfg.model.pretrained}: {len(report['missing'])} tensors not in the file, "
                f"{len(report['mismatched'])} shape mismatches skipped",
                flush=True,
            )
    if cfg.model.sync_bn and dinfo.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
        if device.type == "cpu" and cfg.run.precision == "bf16":
            kept = keep_dilated_depthwise_convs_nchw(model)
            if kept and dinfo.is_main:
                print(
                    f"channels-last bf16 on the CPU: {len(kept)} dilated depthwise convs kept NCHW (first: {kept[0]})",
                    flush=True,
                )
    return model


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
        path = self.out_dir / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
        if path is None or not path.is_file():
            if resume not in (None, "auto"):
                raise FileNotFoundError(f"checkpoint to resume not found: {resume}")
            return
        ckpt = load_training_checkpoint(path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.iteration, self.best_miou, self.history = ckpt["iteration"], ckpt["best_miou"], ckpt.get("history", [])
        _set_rng_state(ckpt["rng"])
        if self.ema is not None:
            if "ema" in ckpt:
                self.ema.load_state_dict(ckpt["ema"])
            else:  # a checkpoint of a run without the average: start it here
                self.ema = WeightEMA(self.model, self.cfg.run.ema_decay)
        if self.dinfo.is_main:
            print(f"resumed from {path} at iteration {self.iteration}/{self.max_iter}", flush=True)

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

    def _agreed(self, value: float) -> float:
        """The largest of `value` over all ranks (the value itself in one process)."""
        if not dist.is_initialized():
            return value
        t = torch.tensor([float(value)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def schedule_position(self) -> int:
        """The iteration the schedule is at: with a time budget, the elapsed share counts too."""
        if not self.budget_s:
            return self.iteration
        elapsed = int(self.max_iter * (time.time() - self.t0) / self.budget_s)
        return int(self._agreed(max(self.iteration, min(self.max_iter, elapsed))))  # one LR on every rank

    def out_of_time(self) -> bool:
        """True once the budget is spent on any rank (all ranks agree, and stop together)."""
        return bool(self.budget_s) and bool(self._agreed(time.time() - self.t0 >= self.budget_s))

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
        if not torch.isfinite(losses["loss"]):
            hint = (
                f"; with run.precision={cfg.run.precision} try fp32"
                if cfg.run.precision != "fp32"
                else "; try a lower optim.lr"
            )
            raise FloatingPointError(f"loss became {losses['loss'].item()} at iteration {self.iteration}{hint}")
        self.iteration += 1
        return losses, lr

    def validate(self, logger: Logger) -> float:
        cfg, ema = self.cfg, self.ema
        selected = self.model if ema is None else ema.model  # the model that is kept and shipped

        def miou_of(model: nn.Module):
            return evaluate(
                model,
                self.val_set,
                self.device,
                cfg.model.num_classes,
                cfg.run.precision,
                cfg.run.val_limit,
                self.dinfo,
                cfg.run.channels_last,
                align_corners=logits_align_corners(cfg.model.variant),
            )

        cm = miou_of(selected)
        miou = cm.miou()
        record = {"val/miou": miou, "val/pixel_accuracy": cm.pixel_accuracy()}
        record.update(
            {
                f"val/iou/{name}": float(v)
                for name, v in zip(self.info.class_names, 100.0 * cm.iou(), strict=True)
                if not np.isnan(v)
            }
        )
        entry = {"iteration": self.iteration, "val_miou": miou}
        if ema is not None:
            record["val/miou_raw_weights"] = entry["val_miou_raw_weights"] = miou_of(self.model).miou()
        self.history.append(entry)
        if self.dinfo.is_main:
            improved = miou > self.best_miou
            if improved:
                self.best_miou = miou
                self.info.extra = {**self.info.extra, "iteration": self.iteration, "val_miou": round(miou, 2)}
                save_weights(selected, self.out_dir / "best.safetensors", self.info)
            logger.log(
                record,
                self.iteration,
                f"[val] iteration {self.iteration}: mIoU {miou:.2f} (best {self.best_miou:.2f})"
                + (f", raw weights {record['val/miou_raw_weights']:.2f}" if ema is not None else "")
                + (" -> best.safetensors" if improved else ""),
            )
        return miou

    def _log_progress(self, logger: Logger, losses, lr: float, epoch: int, start_iter: int) -> None:
        speed = (time.time() - self.t0) / max(self.iteration - start_iter, 1)
        eta = speed * (self.max_iter - self.iteration)
        record = {f"train/{k}": float(v.detach()) for k, v in losses.items()}
        record.update({"train/lr": lr, "train/s_per_iter": speed, "epoch": epoch})
        logger.log(
            record,
            self.iteration,
            f"[train] {self.iteration}/{self.max_iter} epoch {epoch} loss {losses['loss'].item():.4f} "
            f"lr {lr:.2e} {speed:.2f} s/it ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}",
        )

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
                    self._log_progress(logger, losses, lr, epoch, start_iter)
                if cfg.run.checkpoint_every and it % cfg.run.checkpoint_every == 0:
                    self.checkpoint()
                if cfg.run.val_every and it % cfg.run.val_every == 0 and it < self.max_iter:
                    self.validate(logger)
                    self.checkpoint()
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
        return {"iteration": self.iteration, "best_miou": self.best_miou, "final_miou": final, "history": self.history}


def train(cfg: TrainConfig, resume: Optional[str] = None, stop_after: Optional[int] = None) -> dict:
    """Trains per `cfg`. `resume`: a checkpoint path, or 'auto' for <out_dir>/last.pt if present.
    `stop_after`: stop (checkpointed) after this many iterations of this call, for tests."""
    trainer = Trainer(cfg)
    trainer.resume(resume)
    return trainer.fit(stop_after)
