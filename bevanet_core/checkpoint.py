"""Loading and saving model weights without executing pickled code.

The project's own weights are safetensors files whose metadata (`ModelInfo`: variant, classes,
palette, normalisation) travels with the tensors. Foreign checkpoints (the authors' `.pt`/`.pth`)
are read with `torch.load(weights_only=True)`; their tensor names map one to one onto our modules,
after removing a `model.`/`module.` prefix or a `state_dict` wrapper.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from .data.classes import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    default_palette,
)
from .models import SEGMENTATION_MODELS, build_model
from .models.state_checks import meaningless_tensors
from .paths import atomic_write

PathLike = Union[str, os.PathLike]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "bevanet_s_camvid.safetensors"
METADATA_KEY = "bevanet"
_PREFIXES = ("module.", "model.")
_SHAPE_INFERRED = ("bevanet", "bevanet_s")  # variants infer_architecture tells apart
# final classifier weights of the other registered networks (PIDNet, BiSeNetV2, STDC-Seg,
# BSSNet, VAN + Light-Ham): a foreign file's class count
_CLASSIFIER_TENSORS = (
    "final_layer.conv2.weight",
    "head.conv_out.1.weight",
    "conv_out.conv_out.weight",
    "fuse_b_d_head.conv2.weight",
    "decode_head.conv_seg.weight",
)


class CheckpointError(ValueError):
    """A weights file that cannot be used: missing, corrupt, or not matching the model."""


# bounds on what metadata may claim: a mask is uint8 with 255 = unlabeled, so at most 255
# classes; an input size far above any exported network is an attack on memory, not a model
MAX_CLASSES = 255
MAX_INPUT_SIDE = 8192
MAX_METADATA_BYTES = 1 << 20
MAX_NAME_CHARS = 256


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclasses.dataclass
class ModelInfo:
    """What a deployment needs to know about a set of weights besides the tensors."""

    variant: str
    num_classes: int
    class_names: list[str]
    palette: list[list[int]]
    mean: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))
    input_size: Optional[tuple[int, int]] = None  # (width, height) the model was trained/exported for
    ignore_index: int = 255
    dataset: Optional[str] = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Parses and validates (`validate`); ValueError naming the first bad field."""
        if not isinstance(text, (str, bytes)) or len(text) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must be JSON text of at most {MAX_METADATA_BYTES} bytes")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"metadata must be a JSON object, got a JSON {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("variant", "num_classes", "class_names", "palette") if k not in data]
        if missing:
            raise ValueError(f"metadata lacks {', '.join(missing)}")
        info = cls(**{k: v for k, v in data.items() if k in names})
        info.validate()
        return info

    def validate(self) -> None:
        """Checks every field's type and bounds (raises ValueError naming the field); normalises
        `input_size` to a tuple."""
        if not isinstance(self.variant, str) or not 0 < len(self.variant) <= MAX_NAME_CHARS:
            raise ValueError(f"variant must be a non-empty string, got {self.variant!r:.80}")
        if not _is_int(self.num_classes) or not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be an integer in 1..{MAX_CLASSES}, got {self.num_classes!r:.80}")
        n = self.num_classes
        if not isinstance(self.class_names, list) or not all(
            isinstance(c, str) and len(c) <= MAX_NAME_CHARS for c in self.class_names
        ):
            raise ValueError("class_names must be a list of strings")
        if len(self.class_names) != n:
            raise ValueError(f"class_names has {len(self.class_names)} names for num_classes={n}")
        if (
            not isinstance(self.palette, list)
            or len(self.palette) != n
            or not all(
                isinstance(c, (list, tuple)) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)
                for c in self.palette
            )
        ):
            raise ValueError(f"palette must be {n} [r, g, b] colours of integers 0..255")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_number(v) for v in value):
                raise ValueError(f"{name} must be three finite numbers, got {value!r:.80}")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if self.input_size is not None:
            size = self.input_size
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(_is_int(v) and 8 <= v <= MAX_INPUT_SIDE for v in size)
            ):
                raise ValueError(
                    f"input_size must be [width, height], integers in 8..{MAX_INPUT_SIDE}, got {size!r:.80}"
                )
            self.input_size = tuple(size)
        if not _is_int(self.ignore_index) or not 0 <= self.ignore_index <= 255:
            raise ValueError(f"ignore_index must be an integer in 0..255, got {self.ignore_index!r:.80}")
        if self.dataset is not None and (not isinstance(self.dataset, str) or len(self.dataset) > MAX_NAME_CHARS):
            raise ValueError(f"dataset must be a string or null, got {self.dataset!r:.80}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be a JSON object, got {type(self.extra).__name__}")

    @classmethod
    def default(cls, variant: str, num_classes: int, **kwargs) -> ModelInfo:
        """Class names and palette guessed from the class count (CamVid 11, Cityscapes 19)."""
        if num_classes == len(CAMVID_CLASSES):
            names, palette, dataset = CAMVID_CLASSES, CAMVID_PALETTE, "camvid"
        elif num_classes == len(CITYSCAPES_CLASSES):
            names, palette, dataset = CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, "cityscapes"
        else:
            names, palette, dataset = [f"class_{i}" for i in range(num_classes)], default_palette(num_classes), None
        kwargs.setdefault("dataset", dataset)
        return cls(
            variant=variant,
            num_classes=num_classes,
            class_names=list(names),
            palette=[list(c) for c in palette],
            **kwargs,
        )


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: PathLike, info: ModelInfo, dtype: Optional[torch.dtype] = None) -> None:
    """Writes the model's state dict as safetensors with `info` in the metadata (atomically).

    `dtype` (e.g. torch.float16) converts floating-point tensors; integer buffers stay as they are.
    """
    from safetensors.torch import save_file

    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: info.to_json()}))


def read_checkpoint(path: PathLike) -> tuple[dict[str, torch.Tensor], Optional[ModelInfo]]:
    """Returns (state dict with canonical names, ModelInfo or None for foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        state, info = _read_safetensors(path)
    else:
        state, info = _read_torch(path)
    return _canonical_names(state, path), info


def _read_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt headers/data
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    info = None
    if METADATA_KEY in metadata:
        try:
            info = ModelInfo.from_json(metadata[METADATA_KEY])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt model metadata ({exc})") from None
    return state, info


def _read_torch(path: Path):
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only PyTorch checkpoint "
            f"(corrupt, or it needs pickled code, which is refused): {first}"
        ) from None
    info = None
    if isinstance(obj, dict) and isinstance(obj.get("model_info"), str):
        try:
            info = ModelInfo.from_json(obj["model_info"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt model metadata ({exc})") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found in the checkpoint")
    return obj, info


def _canonical_names(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Strips a `model.`/`module.` prefix; the authors' full-model files also hold loss buffers,
    which are dropped when every network tensor carries the prefix."""
    for prefix in _PREFIXES:
        prefixed = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if prefixed and ("conv1.0.weight" in prefixed or len(prefixed) == len(state)):
            state = prefixed
    if not state:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    return state


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raises CheckpointError when a floating-point tensor holds NaN or inf: such weights turn
    every pixel into one class and would otherwise pass for a working model."""
    bad = [
        name for name, t in state.items() if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} tensor(s) hold NaN or inf (e.g. "
            f"{', '.join(bad[:3])}); the weights are poisoned or diverged "
            "(--allow-nonfinite-weights loads them anyway, for research)"
        )


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    """(variant, num_classes) read from tensor shapes of a segmentation state dict."""
    try:
        planes = state["conv1.0.weight"].shape[0]
        num_classes = state["head.conv2.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"not a BEVANet segmentation checkpoint: tensor {exc} is missing") from None
    variant = {32: "bevanet_s", 64: "bevanet"}.get(planes)
    if variant is None:
        raise CheckpointError(f"unknown BEVANet width {planes} (expected 32 for bevanet_s or 64 for bevanet)")
    return variant, int(num_classes)


def load_state_dict_strict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint", strict: bool = True
) -> dict[str, list[str]]:
    """Loads `state` into `model`, mapping every tensor one to one with equal shapes.

    Training-only heads in the file are skipped when the model has none. With strict=True any
    missing, unexpected or mis-shaped tensor raises CheckpointError naming it; with strict=False
    the matching tensors are loaded and the rest are reported.
    """
    own = model.state_dict()
    adapt = getattr(model, "adapt_foreign_state", None)  # e.g. STDC-Seg: aliases, unused heads
    if adapt is not None:
        try:
            state = adapt(state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{source}: {exc}") from None
    heads = tuple(f"{name}." for name in getattr(model, "TRAINING_HEADS", ()))
    if heads and not any(k.startswith(heads) for k in own):  # an inference model: skip them
        state = {k: v for k, v in state.items() if not k.startswith(heads)}
    head = "head.conv2.weight"
    if head in own and head in state and own[head].shape[0] != state[head].shape[0]:
        raise CheckpointError(
            f"{source} has {state[head].shape[0]} classes but the model was built for "
            f"{own[head].shape[0]}; build it with num_classes={state[head].shape[0]}"
        )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problem = meaningless_tensors(own, state)
    if problem:
        raise CheckpointError(f"{source}: {problem}")
    report = {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    if strict and (missing or unexpected or mismatched):
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(parts))
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)
    return report


def load_model(
    path: Optional[PathLike] = None,
    variant: Optional[str] = None,
    num_classes: Optional[int] = None,
    aux_heads: bool = False,
    strict: bool = True,
    device: Union[str, torch.device] = "cpu",
    allow_nonfinite: bool = False,
) -> tuple[nn.Module, ModelInfo]:
    """Builds the network described by a weights file and loads it (eval mode).

    `path=None` loads the shipped CamVid BEVANet-S model. `variant`/`num_classes` default to what
    the file says (metadata, else tensor shapes); giving other values is an error. The
    metadata's class count must equal the head's output channels, and every tensor must be
    finite unless `allow_nonfinite`.
    """
    if path is None:
        path = DEFAULT_WEIGHTS
        if not path.is_file():
            raise CheckpointError(
                f"the shipped default model is missing ({path}); reinstall the package or pass a weights file"
            )
    state, info = read_checkpoint(path)
    named = info.variant if info is not None else None
    if named in SEGMENTATION_MODELS and named not in _SHAPE_INFERRED:
        # other registered networks are named by their metadata; the strict load checks the tensors
        heads = [k for k in _CLASSIFIER_TENSORS if k in state]
        file_variant = info.variant
        file_classes = int(state[heads[0]].shape[0]) if heads else int(info.num_classes)
    elif info is None and variant in SEGMENTATION_MODELS and variant not in _SHAPE_INFERRED:
        # a foreign file (e.g. the authors' PIDNet .pt) of a network the caller names
        heads = [k for k in _CLASSIFIER_TENSORS if k in state]
        if not heads and num_classes is None:
            raise CheckpointError(
                f"{path}: cannot tell the class count of this {variant} "
                "checkpoint (no classifier tensor found); pass num_classes"
            )
        file_variant = variant
        file_classes = int(state[heads[0]].shape[0]) if heads else int(num_classes)
    else:
        file_variant, file_classes = infer_architecture(state)
    if info is not None and info.variant != file_variant:
        raise CheckpointError(f"{path}: metadata says variant {info.variant} but the tensors are {file_variant}")
    if info is not None and info.num_classes != file_classes:
        raise CheckpointError(
            f"{path}: metadata names {info.num_classes} classes but the head has {file_classes} output channels"
        )
    if not allow_nonfinite:
        check_finite(state, str(path))
    if variant is not None and variant != file_variant:
        raise CheckpointError(f"{path} holds a {file_variant} model, not {variant}")
    if num_classes is not None and num_classes != file_classes:
        raise CheckpointError(f"{path} has {file_classes} classes but num_classes={num_classes} was requested")
    if info is None:
        info = ModelInfo.default(file_variant, file_classes)
    model = build_model(file_variant, num_classes=file_classes, aux_heads=aux_heads)
    load_state_dict_strict(model, state, source=str(path), strict=strict)
    return model.to(device).eval(), info
