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
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from .data.classes import (CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
                           IMAGENET_MEAN, IMAGENET_STD, default_palette)
from .models import SEGMENTATION_MODELS, build_model

PathLike = Union[str, os.PathLike]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "bevanet_s_camvid.safetensors"
METADATA_KEY = "bevanet"
_PREFIXES = ("module.", "model.")
_SHAPE_INFERRED = ("bevanet", "bevanet_s")  # variants infer_architecture tells apart
# final classifier weights of the other registered networks (PIDNet, BiSeNetV2, STDC-Seg,
# BSSNet, VAN + Light-Ham): a foreign file's class count
_CLASSIFIER_TENSORS = ("final_layer.conv2.weight", "head.conv_out.1.weight",
                       "conv_out.conv_out.weight", "fuse_b_d_head.conv2.weight",
                       "decode_head.conv_seg.weight")


class CheckpointError(ValueError):
    """A weights file that cannot be used: missing, corrupt, or not matching the model."""


@dataclasses.dataclass
class ModelInfo:
    """What a deployment needs to know about a set of weights besides the tensors."""

    variant: str
    num_classes: int
    class_names: List[str]
    palette: List[List[int]]
    mean: List[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))
    std: List[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))
    input_size: Optional[Tuple[int, int]] = None  # (width, height) the model was trained/exported for
    ignore_index: int = 255
    dataset: Optional[str] = None
    extra: Dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        info = cls(**{k: v for k, v in data.items() if k in names})
        if info.input_size is not None:
            info.input_size = tuple(info.input_size)
        return info

    @classmethod
    def default(cls, variant: str, num_classes: int, **kwargs) -> "ModelInfo":
        """Class names and palette guessed from the class count (CamVid 11, Cityscapes 19)."""
        if num_classes == len(CAMVID_CLASSES):
            names, palette, dataset = CAMVID_CLASSES, CAMVID_PALETTE, "camvid"
        elif num_classes == len(CITYSCAPES_CLASSES):
            names, palette, dataset = CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, "cityscapes"
        else:
            names, palette, dataset = [f"class_{i}" for i in range(num_classes)], default_palette(num_classes), None
        kwargs.setdefault("dataset", dataset)
        return cls(variant=variant, num_classes=num_classes, class_names=list(names),
                   palette=[list(c) for c in palette], **kwargs)


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: PathLike, write_fn) -> None:
    """Calls write_fn(tmp_path) then renames into place, so a crash never leaves half a file.
    The file gets the mode the umask gives (mkstemp's own 0600 would hide it from other users,
    e.g. a node running under another account)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_weights(model: nn.Module, path: PathLike, info: ModelInfo,
                 dtype: Optional[torch.dtype] = None) -> None:
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


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Optional[ModelInfo]]:
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
        raise CheckpointError(f"{path}: cannot be read as a weights-only PyTorch checkpoint "
                              f"(corrupt, or it needs pickled code, which is refused): {first}") from None
    info = None
    if isinstance(obj, dict) and isinstance(obj.get("model_info"), str):
        info = ModelInfo.from_json(obj["model_info"])
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found in the checkpoint")
    return obj, info


def _canonical_names(state: Dict[str, torch.Tensor], path: Path) -> Dict[str, torch.Tensor]:
    """Strips a `model.`/`module.` prefix; the authors' full-model files also hold loss buffers,
    which are dropped when every network tensor carries the prefix."""
    for prefix in _PREFIXES:
        prefixed = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if prefixed and ("conv1.0.weight" in prefixed or len(prefixed) == len(state)):
            state = prefixed
    if not state:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    return state


def infer_architecture(state: Dict[str, torch.Tensor]) -> Tuple[str, int]:
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


def load_state_dict_strict(model: nn.Module, state: Dict[str, torch.Tensor], source: str = "checkpoint",
                           strict: bool = True) -> Dict[str, List[str]]:
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
        raise CheckpointError(f"{source} has {state[head].shape[0]} classes but the model was built for "
                              f"{own[head].shape[0]}; build it with num_classes={state[head].shape[0]}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
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


def load_model(path: Optional[PathLike] = None, variant: Optional[str] = None,
               num_classes: Optional[int] = None, aux_heads: bool = False, strict: bool = True,
               device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, ModelInfo]:
    """Builds the network described by a weights file and loads it (eval mode).

    `path=None` loads the shipped CamVid BEVANet-S model. `variant`/`num_classes` default to what
    the file says (metadata, else tensor shapes); giving other values is an error.
    """
    if path is None:
        path = DEFAULT_WEIGHTS
        if not path.is_file():
            raise CheckpointError(f"the shipped default model is missing ({path}); reinstall the package "
                                  "or pass a weights file")
    state, info = read_checkpoint(path)
    named = info.variant if info is not None else None
    if named in SEGMENTATION_MODELS and named not in _SHAPE_INFERRED:
        # other registered networks are named by their metadata; the strict load checks the tensors
        file_variant, file_classes = info.variant, int(info.num_classes)
    elif info is None and variant in SEGMENTATION_MODELS and variant not in _SHAPE_INFERRED:
        # a foreign file (e.g. the authors' PIDNet .pt) of a network the caller names
        heads = [k for k in _CLASSIFIER_TENSORS if k in state]
        if not heads and num_classes is None:
            raise CheckpointError(f"{path}: cannot tell the class count of this {variant} "
                                  "checkpoint (no classifier tensor found); pass num_classes")
        file_variant = variant
        file_classes = int(state[heads[0]].shape[0]) if heads else int(num_classes)
    else:
        file_variant, file_classes = infer_architecture(state)
    if info is not None and info.variant != file_variant:
        raise CheckpointError(f"{path}: metadata says variant {info.variant} but the tensors are {file_variant}")
    if variant is not None and variant != file_variant:
        raise CheckpointError(f"{path} holds a {file_variant} model, not {variant}")
    if num_classes is not None and num_classes != file_classes:
        raise CheckpointError(f"{path} has {file_classes} classes but num_classes={num_classes} was requested")
    if info is None:
        info = ModelInfo.default(file_variant, file_classes)
    model = build_model(file_variant, num_classes=file_classes, aux_heads=aux_heads)
    load_state_dict_strict(model, state, source=str(path), strict=strict)
    return model.to(device).eval(), info
