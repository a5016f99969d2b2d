"""Training configuration: small typed dataclasses loaded from YAML, overridable as `a.b=value`."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml


@dataclass
class ModelConfig:
    variant: str = "bevanet_s"
    num_classes: int = 11
    pretrained: Optional[str] = None  # classifier or segmentation weights to start from
    sync_bn: bool = False


@dataclass
class DataConfig:
    dataset: str = "camvid"
    root: str = "../shared/data/camvid"
    train_list: Optional[str] = None  # relative to root; None = the dataset's default split
    val_list: Optional[str] = None
    train_split: str = "train"
    val_split: str = "val"
    encoding: str = "index"  # CamVid labels: 'index' PNGs or 'rgb' colour codes
    base_size: int = 480
    crop_size: list[int] = field(default_factory=lambda: [480, 360])  # width, height
    scale_min: float = 0.5
    scale_max: float = 2.1
    scale_step: float = 0.1  # scales are scale_min + k * scale_step (STDC: 0.125)
    flip: bool = True
    edge_border: int = 0  # Cityscapes/ADE20K: 6
    # none; distortion (mmseg PhotoMetricDistortion); jitter (STDC's ColorJitter); camera (colour
    # casts, saturation/hue, grey, blur and noise for other cameras and skies: CameraAugment)
    photometric: str = "none"
    # 'mount': the view of another camera mount (roll, pitch/height, keystone: MountAugment)
    geometric: str = "none"
    # more training frames: folders holding a list.lst (or list files), paths relative to their
    # folder, labels in the dataset's classes with 255 ignored: e.g. bevanet-pseudo-label's output
    # for self-training on unlabelled footage
    extra_train: list[str] = field(default_factory=list)
    workers: int = 1
    # one loss weight per class, or a scheme computed from the training labels at the start:
    # median-frequency or sqrt-median-frequency (training/class_weights.py)
    class_weights: Optional[Union[list[float], str]] = None


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (momentum) or adamw
    lr: float = 0.0038
    momentum: float = 0.9  # SGD only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW only
    weight_decay: float = 5e-4
    power: float = 0.9  # poly decay exponent
    min_lr: float = 0.0  # poly decays to this (mmseg's eta_min)
    warmup_iters: int = 0  # warm-up from lr * warmup_ratio to the schedule's value
    warmup_ratio: float = 1e-6
    warmup_mode: str = "linear"  # linear (mmseg) or exp (STDC-Seg: geometric from the ratio)
    # learning-rate multipliers by parameter-name prefix; the longest matching prefix wins and ""
    # matches everything, e.g. STDC-Seg's heads x10: {"": 10.0, "cp.backbone": 1.0}
    lr_mult: dict[str, float] = field(default_factory=dict)
    # parameters whose names contain one of these get no weight decay (Light-Ham: ["norm"])
    no_decay: list[str] = field(default_factory=list)
    batch_size: int = 8  # per process
    epochs: Optional[int] = None
    iterations: Optional[int] = None  # overrides epochs when set


@dataclass
class LossConfig:
    ohem_thresh: float = 0.9
    ohem_min_kept: int = 131072
    aux: float = 0.4
    main: float = 1.0
    boundary: float = 20.0
    boundary_guided: float = 1.0
    # weight of a Lovasz-softmax term on the main head (a surrogate of 1 - IoU that weighs every
    # class present in the batch alike, thin ones included); 0: off
    lovasz: float = 0.0


@dataclass
class RunConfig:
    out_dir: str = "runs/bevanet-s_camvid"
    seed: int = 304
    device: str = "auto"  # auto, cpu, cuda
    # auto (bf16 where the CPU or GPU computes it natively, else fp32 / fp16: hardware.py),
    # fp32, bf16, fp16 (fp16 only on CUDA)
    precision: str = "auto"
    channels_last: bool = False
    checkpoint_every: int = 50  # iterations
    val_every: int = 100  # iterations; 0 = only at the end
    log_every: int = 10
    val_limit: Optional[int] = None  # evaluate on the first N val images only (quick runs)
    threads: Optional[int] = None
    # exponential moving average of the weights (0 = off): validated, kept as best.safetensors
    # and shipped instead of the raw weights, so a run stopped at a high learning rate still
    # yields a smooth model
    ema_decay: float = 0.0
    # a run that starts from `model.pretrained` weights of an earlier part of the same schedule
    # continues the schedule at this iteration
    start_iteration: int = 0
    # wall-clock budget in minutes (0 = none): the schedule advances with the larger of the
    # iteration's and the elapsed time's share of it, and the run ends, validated and
    # checkpointed, when the time is spent (a GPU lent for a few minutes)
    time_budget_min: float = 0.0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        cfg = cls()
        for section, values in (data or {}).items():
            if section not in _SECTIONS:
                raise ValueError(f"unknown config section '{section}'; known: {', '.join(_SECTIONS)}")
            target = getattr(cfg, section)
            for key, value in (values or {}).items():
                _set_field(target, section, key, value)
        return cfg


_SECTIONS = ("model", "data", "optim", "loss", "run")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Numbers for numeric fields: YAML reads '6e-5' (no dot) as a string, and 1 as an int."""
    if hint in (float, Optional[float]) and value is not None and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config {where} must be a number, got {value!r}") from None
    if hint in (int, Optional[int]) and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in (int, Optional[int]) and value is not None and not isinstance(value, int):
        raise ValueError(f"config {where} must be an integer, got {value!r}")
    return value


def _set_field(obj: Any, section: str, key: str, value: Any) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    if key not in names:
        raise ValueError(f"unknown config key '{section}.{key}'; known: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(type(obj))
    setattr(obj, key, _coerce(value, hints[key], f"{section}.{key}"))


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """YAML file (optional) then `section.key=value` overrides (values parsed as YAML)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        data = yaml.safe_load(p.read_text()) or {}
    cfg = TrainConfig.from_dict(data)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override must look like section.key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        section, key = dotted.split(".", 1)
        if section not in _SECTIONS:
            raise ValueError(f"unknown config section '{section}' in override {item!r}")
        _set_field(getattr(cfg, section), section, key, _parse_value(raw))
    return cfg


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
