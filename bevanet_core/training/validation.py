"""Validation during training: full-image logits, the single-scale evaluation of a model on a
dataset (confusion matrices summed over ranks), and the validation step of a run."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import save_weights
from ..evaluation.metrics import ConfusionMatrix
from ..options import logits_align_corners
from .build import autocast_context
from .distributed import DistInfo
from .run_log import Logger


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


def validate_run(trainer, logger: Logger) -> float:
    """Validates the model kept (the average of the weights, when the run keeps one; the raw
    weights as well then), logs it, records it in the history and, on rank 0, writes
    best.safetensors when the mIoU improved. Returns the mIoU."""
    cfg, ema = trainer.cfg, trainer.ema
    selected = trainer.model if ema is None else ema.model  # the model that is kept and shipped

    def miou_of(model: nn.Module):
        return evaluate(
            model,
            trainer.val_set,
            trainer.device,
            cfg.model.num_classes,
            cfg.run.precision,
            cfg.run.val_limit,
            trainer.dinfo,
            cfg.run.channels_last,
            align_corners=logits_align_corners(cfg.model.variant),
        )

    cm = miou_of(selected)
    miou = cm.miou()
    record = {"val/miou": miou, "val/pixel_accuracy": cm.pixel_accuracy()}
    record.update(
        {
            f"val/iou/{name}": float(v)
            for name, v in zip(trainer.info.class_names, 100.0 * cm.iou(), strict=True)
            if not np.isnan(v)
        }
    )
    entry = {"iteration": trainer.iteration, "val_miou": miou}
    if ema is not None:
        record["val/miou_raw_weights"] = entry["val_miou_raw_weights"] = miou_of(trainer.model).miou()
    trainer.history.append(entry)
    if trainer.dinfo.is_main:
        improved = miou > trainer.best_miou
        if improved:
            trainer.best_miou = miou
            trainer.info.extra = {**trainer.info.extra, "iteration": trainer.iteration, "val_miou": round(miou, 2)}
            save_weights(selected, trainer.out_dir / "best.safetensors", trainer.info)
        logger.log(
            record,
            trainer.iteration,
            f"[val] iteration {trainer.iteration}: mIoU {miou:.2f} (best {trainer.best_miou:.2f})"
            + (f", raw weights {record['val/miou_raw_weights']:.2f}" if ema is not None else "")
            + (" -> best.safetensors" if improved else ""),
        )
    return miou
