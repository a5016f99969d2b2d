"""ImageNet-style classifier pretraining of the BEVANet backbone (the authors' tools/pretrain.py
recipe: SGD 0.1, momentum 0.9, WD 1e-4, batch 256, 135 epochs, step or cosine LR, MixUp 0.8 /
CutMix 1.0), resumable like segmentation training. The result's backbone initialises a
segmentation model through `model.pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..checkpoint import ModelInfo, save_weights
from ..data.classes import IMAGENET_MEAN, IMAGENET_STD, default_palette
from ..data.datasets import ImageFolderClassification
from ..data.transforms import normalize
from ..hardware import resolve_precision
from ..models import build_model
from ..paths import atomic_write
from .build import autocast_context, resolve_device
from .checkpointing import load_training_checkpoint
from .distributed import ResumableBatchSampler


@dataclass
class PretrainConfig:
    variant: str = "bevanet_cls"
    train_dir: str = "data/imagenet/train"
    val_dir: Optional[str] = "data/imagenet/val"
    out_dir: str = "runs/pretrain"
    image_size: int = 224
    epochs: int = 135
    iterations: Optional[int] = None  # overrides epochs (short runs, tests)
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "step"  # step (x0.1 every 30 epochs) or cosine (with warm-up)
    warmup_epochs: int = 5
    mixup: float = 0.8
    cutmix: float = 1.0
    precision: str = "auto"  # hardware.resolve_precision
    device: str = "auto"
    workers: int = 4
    seed: int = 88
    threads: Optional[int] = None
    checkpoint_every: int = 500


@dataclass
class ClassifierTrainTransform:
    """Random resized crop (scale 0.08-1, ratio 3/4-4/3), horizontal flip, normalise."""

    size: int = 224

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        h, w = image.shape[:2]
        area = h * w
        for _ in range(10):
            target = area * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                break
        else:  # central crop fallback
            cw = ch = min(h, w)
            x, y = (w - cw) // 2, (h - ch) // 2
        crop = cv2.resize(image[y : y + ch, x : x + cw], (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return normalize(crop, IMAGENET_MEAN, IMAGENET_STD)


@dataclass
class ClassifierEvalTransform:
    """Resize the short side to size/0.875, centre crop size x size."""

    size: int = 224

    def __call__(self, image: np.ndarray, rng=None) -> torch.Tensor:
        h, w = image.shape[:2]
        short = int(round(self.size / 0.875))
        scale = short / min(h, w)
        image = cv2.resize(
            image, (max(self.size, round(w * scale)), max(self.size, round(h * scale))), interpolation=cv2.INTER_LINEAR
        )
        h, w = image.shape[:2]
        y, x = (h - self.size) // 2, (w - self.size) // 2
        return normalize(image[y : y + self.size, x : x + self.size], IMAGENET_MEAN, IMAGENET_STD)


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    mixup: float,
    cutmix: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix (chosen at random, as torchvision's RandomChoice) with soft targets."""
    soft = F.one_hot(targets, num_classes).float()
    choices = [m for m, a in (("mixup", mixup), ("cutmix", cutmix)) if a > 0]
    if not choices or images.shape[0] < 2:
        return images, soft
    kind = choices[int(torch.randint(len(choices), (1,), generator=generator))]
    alpha = mixup if kind == "mixup" else cutmix
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.roll(torch.arange(images.shape[0]), 1)  # as torchvision: pair with the next sample
    if kind == "mixup":
        mixed = lam * images + (1 - lam) * images[perm]
    else:
        h, w = images.shape[-2:]
        cy, cx = int(torch.randint(h, (1,), generator=generator)), int(torch.randint(w, (1,), generator=generator))
        rh, rw = int(h * math.sqrt(1 - lam) / 2), int(w * math.sqrt(1 - lam) / 2)
        y0, y1, x0, x1 = max(cy - rh, 0), min(cy + rh, h), max(cx - rw, 0), min(cx + rw, w)
        mixed = images.clone()
        mixed[..., y0:y1, x0:x1] = images[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, lam * soft + (1 - lam) * soft[perm]


def learning_rate(cfg: PretrainConfig, iteration: int, iters_per_epoch: int, max_iter: int) -> float:
    epoch = iteration / iters_per_epoch
    if cfg.scheduler == "step":
        return cfg.lr * (0.1 ** int(epoch // 30))
    if cfg.scheduler == "cosine":
        warm = cfg.warmup_epochs * iters_per_epoch
        if iteration < warm:
            return 1e-6 + (cfg.lr - 1e-6) * iteration / warm
        t = (iteration - warm) / max(max_iter - warm, 1)
        return 1e-5 + (cfg.lr - 1e-5) * 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"scheduler must be 'step' or 'cosine', got {cfg.scheduler!r}")


@torch.no_grad()
def evaluate_classifier(model, dataset, device, batch_size: int = 64) -> dict[str, float]:
    model.eval()
    correct1 = correct5 = total = 0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([im for im, _ in items]).to(device)
        y = torch.tensor([t for _, t in items], device=device)
        top = model(x).topk(min(5, model.num_classes), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += len(items)
    model.train()
    return {"top1": 100.0 * correct1 / total, "top5": 100.0 * correct5 / total}


def pretrain(cfg: PretrainConfig, resume: Optional[str] = None, stop_after: Optional[int] = None) -> dict:
    device = resolve_device(cfg.device)
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device.type))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_set = ImageFolderClassification(cfg.train_dir, ClassifierTrainTransform(cfg.image_size), cfg.seed)
    val_set = ImageFolderClassification(cfg.val_dir, ClassifierEvalTransform(cfg.image_size)) if cfg.val_dir else None
    num_classes = len(train_set.classes)
    model = build_model(cfg.variant, num_classes=num_classes).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    batches = ResumableBatchSampler.batches_per_epoch(len(train_set), cfg.batch_size)
    if batches == 0:
        raise ValueError(f"{len(train_set)} training images are fewer than one batch of {cfg.batch_size}")
    max_iter = cfg.iterations or cfg.epochs * batches
    iteration, best, history = 0, -1.0, []
    ckpt_path = out / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
    if ckpt_path is not None and ckpt_path.is_file():
        ckpt = load_training_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        iteration, best, history = ckpt["iteration"], ckpt["best_top1"], ckpt["history"]
        torch.set_rng_state(ckpt["torch_rng"])
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    info = ModelInfo(
        variant=cfg.variant,
        num_classes=num_classes,
        class_names=train_set.classes,
        palette=default_palette(num_classes),
        input_size=(cfg.image_size, cfg.image_size),
        dataset="imagenet-folder",
    )
    mix_gen = torch.Generator().manual_seed(cfg.seed)

    def save(kind: str = "last") -> None:
        payload = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "best_top1": best,
            "history": history,
            "torch_rng": torch.get_rng_state(),
            "config": dataclasses.asdict(cfg),
            "model_info": info.to_json(),
        }
        atomic_write(out / f"{kind}.pt", lambda tmp: torch.save(payload, tmp))

    log = open(out / "pretrain.log.jsonl", "a")
    done, t0 = 0, time.time()
    while iteration < max_iter:
        epoch, start_batch = divmod(iteration, batches)
        mix_gen.manual_seed(cfg.seed * 7919 + iteration)
        sampler = ResumableBatchSampler(len(train_set), cfg.batch_size, cfg.seed, epoch, start_batch=start_batch)
        for images, targets in DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.workers):
            lr = learning_rate(cfg, iteration, batches, max_iter)
            for g in optimizer.param_groups:
                g["lr"] = lr
            images, soft = mix_batch(images.to(device), targets.to(device), num_classes, cfg.mixup, cfg.cutmix, mix_gen)
            with autocast_context(device, cfg.precision):
                logits = model(images)
            loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=1), dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            done += 1
            log.write(json.dumps({"iteration": iteration, "loss": loss.item(), "lr": lr}) + "\n")
            log.flush()
            if iteration % 10 == 0 or iteration == max_iter:
                speed = (time.time() - t0) / done
                print(
                    f"[pretrain] {iteration}/{max_iter} loss {loss.item():.4f} lr {lr:.2e} {speed:.2f} s/it", flush=True
                )
            if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0:
                save()
            if (stop_after is not None and done >= stop_after) or iteration >= max_iter:
                break
        if stop_after is not None and done >= stop_after:
            save()
            log.close()
            return {"iteration": iteration, "stopped": True}
        if val_set is not None and (iteration % batches == 0 or iteration >= max_iter):
            metrics = evaluate_classifier(model, val_set, device)
            history.append({"iteration": iteration, **metrics})
            print(f"[val] iteration {iteration}: top-1 {metrics['top1']:.2f} top-5 {metrics['top5']:.2f}", flush=True)
            if metrics["top1"] > best:
                best = metrics["top1"]
                save_weights(model, out / "best_classifier.safetensors", info)
        save()
    # the backbone tensors a segmentation run starts from (`model.pretrained: <this file>`)
    backbone = build_model(cfg.variant, num_classes=num_classes)
    backbone.load_state_dict(model.state_dict())
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.segmentation_state_dict().items()}
    atomic_write(out / "backbone.safetensors", lambda tmp: save_file(tensors, tmp))
    log.close()
    return {
        "iteration": iteration,
        "best_top1": best,
        "history": history,
        "backbone": str(out / "backbone.safetensors"),
    }
