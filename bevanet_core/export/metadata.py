"""Metadata that travels with every exported artifact (ONNX model, TensorRT engine).

It is written twice: inside the artifact where the format allows (ONNX `metadata_props`) and
in a JSON sidecar next to it (`model.onnx` -> `model.onnx.json`), which also records the
artifact's own SHA-256 so a replaced or truncated file is noticed.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from ..checkpoint import (
    MAX_INPUT_SIDE,
    MAX_METADATA_BYTES,
    ModelInfo,
    file_sha256,
)
from ..paths import atomic_write

PathLike = Union[str, os.PathLike]
METADATA_KEY = "bevanet"
SCHEMA_VERSION = 1


class ArtifactError(ValueError):
    """An exported artifact that cannot be used: missing, corrupt, stale or mismatched."""


@dataclasses.dataclass
class ArtifactMetadata:
    """What a runtime needs besides the artifact: the model's ModelInfo and how it was made."""

    format: str  # "onnx" or "tensorrt"
    model_info: dict[str, Any]  # ModelInfo as a dict (variant, classes, palette, mean/std, ...)
    input_size: tuple[int, int]  # (W, H) of the network input
    batch: int  # static batch (the max batch for dynamic-batch artifacts)
    dynamic_batch: bool = False
    precision: str = "fp32"
    model_hash: str = ""  # SHA-256 of the inference model's tensors (names, dtypes, shapes, bytes)
    source_hash: str = ""  # for engines: SHA-256 of the ONNX file it was built from
    input_name: str = "images"
    output_name: str = "logits"
    output_stride: int = 8
    bn_folded: bool = False
    exporter: str = ""
    opset: Optional[int] = None
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    device: dict[str, Any] = dataclasses.field(default_factory=dict)  # GPU name, compute capability
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    file_sha256: str = ""  # sidecar only
    created: str = ""
    schema: int = SCHEMA_VERSION

    @property
    def info(self) -> ModelInfo:
        return ModelInfo.from_json(json.dumps(self.model_info))

    def to_json(self, with_file_hash: bool = True) -> str:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        if not with_file_hash:
            data.pop("file_sha256")
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ArtifactMetadata:
        try:
            if len(text) > MAX_METADATA_BYTES:
                raise ValueError(f"metadata is {len(text)} bytes (at most {MAX_METADATA_BYTES})")
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"metadata is a JSON {type(data).__name__}, not an object")
            names = {f.name for f in dataclasses.fields(cls)}
            meta = cls(**{k: v for k, v in data.items() if k in names})
            size = meta.input_size
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= MAX_INPUT_SIDE for v in size)
            ):
                raise ValueError(
                    f"input_size must be [width, height], integers in 8..{MAX_INPUT_SIDE}, got {size!r:.80}"
                )
            meta.input_size = tuple(size)  # type: ignore[assignment]
            if not isinstance(meta.batch, int) or not 1 <= meta.batch <= 4096:
                raise ValueError(f"batch must be an integer in 1..4096, got {meta.batch!r:.80}")
            if not isinstance(meta.model_info, dict):
                raise ValueError("model_info must be a JSON object")
            ModelInfo.from_json(json.dumps(meta.model_info))
        except (ValueError, TypeError, KeyError) as exc:
            raise ArtifactError(f"{source}: unreadable bevanet metadata ({type(exc).__name__}: {exc})") from None
        return meta


def sidecar_path(path: PathLike) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(path: PathLike, meta: ArtifactMetadata) -> Path:
    """Writes the sidecar of `path` (recording the artifact's current SHA-256), atomically."""
    meta.file_sha256 = file_sha256(path)
    side = sidecar_path(path)
    text = meta.to_json()
    atomic_write(side, lambda tmp: Path(tmp).write_text(text + "\n"))
    return side


def read_sidecar(path: PathLike, verify_hash: bool = True) -> ArtifactMetadata:
    """Reads the sidecar of `path`; `verify_hash`: the artifact must match its recorded SHA-256."""
    side = sidecar_path(path)
    if not side.is_file():
        raise ArtifactError(f"{path}: metadata sidecar {side} is missing (re-export with bevanet-export)")
    meta = ArtifactMetadata.from_json(side.read_text(), source=str(side))
    if verify_hash and meta.file_sha256 and meta.file_sha256 != file_sha256(path):
        raise ArtifactError(
            f"{path} does not match its sidecar {side.name} (SHA-256 differs): the file was "
            "replaced or is corrupt; re-export it"
        )
    return meta


def model_hash(model: nn.Module) -> str:
    """SHA-256 of the state dict (sorted names, dtypes, shapes, bytes): same weights, same hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def tool_versions(extra: Optional[list[str]] = None) -> dict[str, str]:
    """Versions of the packages that shaped an artifact (those that import)."""
    from .. import __version__

    versions = {"bevanet_core": __version__, "torch": torch.__version__}
    for name in ["onnx", "onnxruntime", "onnxscript"] + list(extra or []):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "unknown"))
        except Exception:  # not installed, or broken: not part of this artifact's story
            continue
    return versions


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
