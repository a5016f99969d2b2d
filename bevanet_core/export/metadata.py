"""Metadata that travels with every exported artifact (ONNX model, TensorRT engine).

It is written twice: inside the artifact where the format allows (ONNX `metadata_props`) and
in a JSON sidecar next to it (`model.onnx` -> `model.onnx.json`), which also records the
artifact's own SHA-256 so a replaced or truncated file is noticed. Reading it
(`read_onnx_metadata`, `read_sidecar`) is all the runtime needs to load an artifact that exists;
making one is `bevanet_core.export.artifacts.build_artifact`.
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


def serves_precision(have: str, want: str) -> bool:
    """Whether an ONNX model of precision `have` runs precision `want` as it is (bf16 runs the
    fp32 model: the backend applies it at compile time)."""
    return have == want or (have == "fp32" and want == "bf16")


def read_onnx_metadata(path: PathLike) -> ArtifactMetadata:
    """Metadata of an exported ONNX file: its `metadata_props`, else its sidecar."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY in props:
        meta = ArtifactMetadata.from_json(props[METADATA_KEY], source=str(path))
    elif sidecar_path(path).is_file():
        meta = read_sidecar(path)
    else:
        meta = None
    if meta is not None:
        check_graph_shapes(proto, meta, path)
        return meta
    raise ArtifactError(
        f"{path} carries no bevanet metadata (no '{METADATA_KEY}' metadata_props entry and "
        f"no sidecar {sidecar_path(path).name}); export it with bevanet-export"
    )


def read_ir_metadata(path: PathLike) -> ArtifactMetadata:
    """Metadata of an OpenVINO IR (`.xml`): its runtime info entry `bevanet` (export/openvino.py),
    else its sidecar."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"OpenVINO IR not found: {path}")
    if not path.with_suffix(".bin").is_file():
        raise ArtifactError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    try:
        import openvino as ov
    except ImportError:
        ov = None
    if ov is not None:
        try:
            model = ov.Core().read_model(str(path))
        except Exception as exc:
            raise ArtifactError(f"{path}: not a readable OpenVINO IR ({type(exc).__name__}: {exc})") from None
        if model.has_rt_info([METADATA_KEY]):
            return ArtifactMetadata.from_json(model.get_rt_info([METADATA_KEY]).astype(str), source=str(path))
    if sidecar_path(path).is_file():
        return read_sidecar(path, verify_hash=False)  # the .xml is small; its .bin carries the weights
    raise ArtifactError(
        f"{path} carries no bevanet metadata (no '{METADATA_KEY}' runtime info and no sidecar "
        f"{sidecar_path(path).name}); write it with bevanet-export --openvino"
    )


ONNX_SUFFIXES = (".onnx",)
IR_SUFFIXES = (".xml",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def artifact_precision(path: Optional[PathLike]) -> Optional[str]:
    """The precision an exported model file carries (an ONNX model, an OpenVINO IR, a TensorRT
    engine's sidecar); None for a checkpoint or no file (their precision is a run-time choice)."""
    if path is None:
        return None
    suffix = Path(path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return read_onnx_metadata(path).precision
    if suffix in IR_SUFFIXES:
        return read_ir_metadata(path).precision
    if suffix in ENGINE_SUFFIXES:
        return read_sidecar(path, verify_hash=False).precision
    return None


def _dims(value_info) -> list:
    """The dimensions of a graph input/output: ints, or the symbolic name of a dynamic axis."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _element_type(value_info) -> str:
    import onnx

    elem = value_info.type.tensor_type.elem_type
    return onnx.TensorProto.DataType.Name(elem).lower() if elem else "untyped"


def check_graph_io(proto, meta: ArtifactMetadata, path: PathLike) -> None:
    """The graph takes one input and gives one output, named as the metadata says, both float32
    (an fp16 or int8 graph converts inside: a float16 input would die at the first frame);
    ArtifactError naming the file and what differs otherwise."""
    graph = proto.graph
    weights = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in weights]
    for kind, found, named in (("input", inputs, meta.input_name), ("output", list(graph.output), meta.output_name)):
        if len(found) != 1:
            raise ArtifactError(
                f"{path}: the ONNX graph has {len(found)} {kind}s ({', '.join(v.name for v in found) or 'none'}) "
                f"but a segmentation model has one, {named!r}"
            )
        if found[0].name != named:
            raise ArtifactError(
                f"{path}: the graph's {kind} is named {found[0].name!r} but its metadata says {named!r}; "
                "the file and its metadata do not belong together"
            )
        if _element_type(found[0]) != "float":
            raise ArtifactError(
                f"{path}: the graph's {kind} {named!r} is {_element_type(found[0])} but the backends feed and read "
                "float32 (an fp16 or int8 model keeps float32 inputs and outputs); re-export it with bevanet-export"
            )


def check_graph_shapes(proto, meta: ArtifactMetadata, path: PathLike) -> None:
    """The graph's input and output names, counts and element types (`check_graph_io`), its
    input N x 3 x H x W with (W, H) = the metadata's input size and its output
    N x num_classes x h x w; ArtifactError naming both otherwise."""
    graph = proto.graph
    if not graph.input or not graph.output:
        raise ArtifactError(f"{path}: the ONNX graph has no input or no output")
    check_graph_io(proto, meta, path)
    inp, out = _dims(graph.input[0]), _dims(graph.output[0])
    w, h = meta.input_size
    classes = meta.model_info["num_classes"]
    if len(inp) != 4 or inp[1] != 3 or inp[2:] != [h, w]:
        raise ArtifactError(
            f"{path}: the graph's input {graph.input[0].name} is "
            f"{'x'.join(str(d) for d in inp)} but its metadata says N x 3 x {h} x {w} "
            f"(input_size {w}x{h}); the file and its metadata do not belong together"
        )
    if len(out) != 4 or out[1] != classes:
        raise ArtifactError(
            f"{path}: the graph's output {graph.output[0].name} is "
            f"{'x'.join(str(d) for d in out)} but its metadata names {classes} classes; the "
            "file and its metadata do not belong together"
        )
