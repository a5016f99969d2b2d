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
    checkpoint_every: int = 50  # iterations; 0 = none
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
    # the run ends, validated and checkpointed, once its validated mIoU has risen less than
    # `plateau_gain` points over the last `plateau_window` iterations (0: runs to the schedule's end)
    plateau_window: int = 0
    plateau_gain: float = 0.5


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
                raise ConfigError(f"unknown config section '{section}'; known: {', '.join(_SECTIONS)}")
            if not isinstance(values or {}, dict):
                raise ConfigError(f"config section '{section}' must hold key: value lines, got {values!r}")
            target = getattr(cfg, section)
            for key, value in (values or {}).items():
                _set_field(target, section, key, value)
        return cfg


_SECTIONS = ("model", "data", "optim", "loss", "run")


class ConfigError(ValueError):
    """A recipe key with a value of the wrong type or range; the message names key, value and what is expected."""


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        plural = {str: "texts", int: "integers", float: "numbers", bool: "booleans"}
        return f"a list of {plural.get(args[0], _type_name(args[0]))}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return {str: "text", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """`value` as `hint` asks (numbers coerced: YAML reads '6e-5' as text and 1 as an int), else ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def wrong() -> ConfigError:
        return ConfigError(f"config {where} must be {_type_name(hint)}, got {value!r}")

    if origin is Union:
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                continue
        raise wrong()
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        try:
            return [_check_type(v, args[0], where) for v in value]
        except ConfigError:
            raise wrong() from None
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong()
        try:
            return {_check_type(k, args[0], where): _check_type(v, args[1], where) for k, v in value.items()}
        except ConfigError:
            raise wrong() from None
    if hint is bool:
        if not isinstance(value, bool):  # "false" in quotes is text, and would be true
            raise wrong()
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if hint is float:
        if isinstance(value, bool):
            raise wrong()
        try:
            return float(value)
        except (TypeError, ValueError):
            raise wrong() from None
    if hint is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    return value


def _at_least(low: float, strict: bool = False):
    def check(v):
        return v is None or (v > low if strict else v >= low)

    return check, f"{'>' if strict else '>='} {low:g}"


def _between(low: float, high: float, high_open: bool = False):
    def check(v):
        return v is None or (low <= v < high if high_open else low <= v <= high)

    return check, f"in [{low:g}, {high:g}{')' if high_open else ']'}"


def _one_of(*choices: str):
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


def _all(rule):
    check, what = rule
    return (lambda v: all(check(x) for x in v)), f"each {what}"


def _device(v: str) -> bool:
    head, _, index = v.partition(":")
    return v in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit())


def _variants() -> list[str]:
    from ..models import list_models

    return list_models("segmentation") + list_models("classification")


def _variant(v: str) -> bool:
    return v in _variants()


# ranges and choices of the keys whose type alone does not say what is valid
RULES: dict[str, tuple[Any, Any]] = {  # key: (check, what is expected, or a function of nothing saying it)
    "model.variant": (_variant, lambda: "one of " + ", ".join(_variants())),
    "model.num_classes": _at_least(1),
    "data.dataset": _one_of("camvid", "cityscapes", "ade20k", "custom"),
    "data.encoding": _one_of("index", "rgb"),
    "data.base_size": _at_least(8),
    "data.crop_size": ((lambda v: len(v) == 2 and all(x >= 8 for x in v)), "[width, height], each >= 8"),
    "data.scale_min": _at_least(0, strict=True),
    "data.scale_max": _at_least(0, strict=True),
    "data.scale_step": _at_least(0, strict=True),
    "data.edge_border": _at_least(0),
    "data.photometric": _one_of("none", "distortion", "jitter", "camera"),
    "data.geometric": _one_of("none", "mount"),
    "data.workers": _at_least(0),
    "data.class_weights": (
        (
            lambda v: (
                v is None
                or (
                    v in ("median-frequency", "sqrt-median-frequency") if isinstance(v, str) else all(x >= 0 for x in v)
                )
            )
        ),
        "a list of weights >= 0, 'median-frequency' or 'sqrt-median-frequency'",
    ),
    "optim.name": _one_of("sgd", "adamw"),
    "optim.lr": _at_least(0, strict=True),
    "optim.momentum": _between(0, 1, high_open=True),
    "optim.betas": ((lambda v: len(v) == 2 and all(0 <= x < 1 for x in v)), "two numbers in [0, 1)"),
    "optim.weight_decay": _at_least(0),
    "optim.power": _at_least(0),
    "optim.min_lr": _at_least(0),
    "optim.warmup_iters": _at_least(0),
    "optim.warmup_ratio": _between(0, 1),
    "optim.warmup_mode": _one_of("linear", "exp"),
    "optim.lr_mult": ((lambda v: all(x >= 0 for x in v.values())), "multipliers >= 0"),
    "optim.batch_size": _at_least(1),
    "optim.epochs": _at_least(1),
    "optim.iterations": _at_least(1),
    "loss.ohem_thresh": _between(0, 1),
    "loss.ohem_min_kept": _at_least(0),
    "loss.aux": _at_least(0),
    "loss.main": _at_least(0),
    "loss.boundary": _at_least(0),
    "loss.boundary_guided": _at_least(0),
    "loss.lovasz": _at_least(0),
    "run.seed": _at_least(0),
    "run.device": (_device, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "run.precision": _one_of("auto", "fp32", "bf16", "fp16"),
    "run.checkpoint_every": _at_least(0),  # 0: no checkpoints (a short run, a lent GPU)
    "run.val_every": _at_least(0),
    "run.log_every": _at_least(1),
    "run.val_limit": _at_least(1),
    "run.threads": _at_least(1),
    "run.ema_decay": _between(0, 1, high_open=True),
    "run.start_iteration": _at_least(0),
    "run.time_budget_min": _at_least(0),
    "run.plateau_window": _at_least(0),
    "run.plateau_gain": _at_least(0),
}


def _set_field(obj: Any, section: str, key: str, value: Any) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    if key not in names:
        raise ConfigError(f"unknown config key '{section}.{key}'; known: {', '.join(sorted(names))}")
    where = f"{section}.{key}"
    value = _check_type(value, typing.get_type_hints(type(obj))[key], where)
    rule = RULES.get(where)
    if rule is not None and value is not None and not rule[0](value):
        what = rule[1]() if callable(rule[1]) else rule[1]
        raise ConfigError(f"config {where} must be {what}, got {value!r}")
    setattr(obj, key, value)


def check_config(cfg: TrainConfig) -> None:
    """What no single key shows: keys that must agree with each other."""
    d = cfg.data
    if d.scale_max < d.scale_min:
        raise ConfigError(f"config data.scale_max ({d.scale_max:g}) must be >= data.scale_min ({d.scale_min:g})")
    if isinstance(d.class_weights, list) and len(d.class_weights) != cfg.model.num_classes:
        raise ConfigError(
            f"config data.class_weights has {len(d.class_weights)} weights but model.num_classes is "
            f"{cfg.model.num_classes}"
        )
    if cfg.optim.iterations is not None and cfg.run.start_iteration >= cfg.optim.iterations:
        raise ConfigError(
            f"config run.start_iteration ({cfg.run.start_iteration}) must be below optim.iterations "
            f"({cfg.optim.iterations})"
        )
    r = cfg.run
    if r.plateau_window and not 0 < r.val_every <= r.plateau_window:
        raise ConfigError(
            f"config run.plateau_window ({r.plateau_window}) needs validations within it: run.val_every "
            f"({r.val_every}) must be between 1 and run.plateau_window"
        )


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """YAML file (optional) then `section.key=value` overrides (values parsed as YAML)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold sections (model, data, optim, loss, run), got {type(data).__name__}")
    cfg = TrainConfig.from_dict(data)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override must look like section.key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        section, key = dotted.split(".", 1)
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section '{section}' in override {item!r}")
        _set_field(getattr(cfg, section), section, key, _parse_value(raw))
    check_config(cfg)
    return cfg


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
