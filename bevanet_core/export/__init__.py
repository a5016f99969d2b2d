"""Exporters: ONNX (static shapes, metadata inside and in a sidecar) and TensorRT engines."""

from .metadata import ArtifactError, ArtifactMetadata, model_hash, read_sidecar, sidecar_path
from .onnx import export_onnx, read_onnx_metadata

__all__ = [
    "ArtifactError",
    "ArtifactMetadata",
    "export_onnx",
    "model_hash",
    "read_onnx_metadata",
    "read_sidecar",
    "sidecar_path",
]
