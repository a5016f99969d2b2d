"""What a training run is built from: the device, the datasets, the network with its training
heads, the objective, the optimizer with its parameter groups, the poly learning-rate schedule
and the autocast context."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..checkpoint import load_state_dict_strict, read_checkpoint
from ..data.datasets import build_dataset, read_pair_list
from ..data.transforms import EvalTransform, TrainTransform
from ..models import build_model
from ..models.layers import dilated_depthwise_convs
from .config import TrainConfig
from .distributed import DistInfo
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
        geometric=d.geometric,
    )
    lists = {k: (root / v if v else None) for k, v in (("train", d.train_list), ("val", d.val_list))}
    train = build_dataset(d.dataset, root, lists["train"], d.train_split, train_tf, d.encoding, cfg.run.seed)
    for extra in d.extra_train:
        list_file = Path(extra) / "list.lst" if Path(extra).is_dir() else Path(extra)
        train.pairs.extend(read_pair_list(list_file.parent, list_file))
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
