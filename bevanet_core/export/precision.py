"""Explicit-precision ONNX: fp16-typed graphs and int8 Q/DQ graphs from an fp32 export.

The precision lives in the ONNX file itself, so one artifact serves ONNX Runtime, OpenVINO and
strongly typed TensorRT networks (TensorRT 10 and 11 alike), with no builder precision flag:

- fp16: every float tensor and weight becomes float16 through ONNX Runtime's converter
  (`onnxruntime.transformers.float16`). Inputs and outputs stay float32 (a Cast at each end), and
  the normalisation and reduction ops in `FP16_KEEP_FP32_OPS` stay float32, with Casts around them.
- int8: post-training static quantization by ONNX Runtime (`onnxruntime.quantization`), QDQ
  format, symmetric int8 weights (per output channel) and activations, the form TensorRT's
  explicit quantization takes. Scales come from real frames, preprocessed exactly like at run
  time. Only convolutions (and matmuls) are quantized; the attention gates (Sigmoid products),
  LayerNorm, the softmax-free pooling paths and the final classifier stay in float.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from ..paths import atomic_write
from .metadata import METADATA_KEY, ArtifactError, ArtifactMetadata, PathLike, write_sidecar

log = logging.getLogger(__name__)

ONNX_PRECISIONS = ("fp32", "fp16", "int8")
# float32 in an fp16 graph: normalisation statistics and long reductions lose too much in fp16
FP16_KEEP_FP32_OPS = (
    "LayerNormalization",
    "ReduceMean",
    "ReduceSum",
    "GlobalAveragePool",
    "Softmax",
)
INT8_OP_TYPES = ("Conv", "MatMul", "Gemm")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATION_IMAGES = 64
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def onnx_precision(path: PathLike) -> str:
    """'int8' when the graph holds Q/DQ nodes, 'fp16' when its weights are float16, else 'fp32'."""
    import onnx

    return onnx_precision_of(onnx.load(str(path), load_external_data=False))


def calibration_files(folder: PathLike, limit: Optional[int] = None) -> list[Path]:
    """Sorted image files of a calibration folder (recursive); an empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder {folder}")
    return files[:limit] if limit else files


def calibration_hash(files: Sequence[Path], resize: str) -> str:
    """Digest of the calibration set (names, sizes, mtimes) and how it is preprocessed."""
    digest = hashlib.sha256(resize.encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _retag(proto, meta: ArtifactMetadata) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json(with_file_hash=False)
    proto.producer_name = "bevanet_core"


def _save(proto, path: Path, meta: ArtifactMetadata) -> ArtifactMetadata:
    import onnx

    _retag(proto, meta)
    onnx.checker.check_model(proto)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    write_sidecar(path, meta)
    return meta


def _derived_meta(src_meta: ArtifactMetadata, precision: str, **extra) -> ArtifactMetadata:
    import dataclasses

    from .metadata import now_iso, tool_versions

    return dataclasses.replace(
        src_meta,
        precision=precision,
        versions=tool_versions(),
        created=now_iso(),
        extra={**src_meta.extra, **extra},
    )


def _check_source(src: Path, dst: Path) -> ArtifactMetadata:
    from .metadata import read_onnx_metadata

    if dst.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output path must end in .onnx, got {dst}")
    meta = read_onnx_metadata(src)
    if meta.precision != "fp32" or onnx_precision(src) != "fp32":
        raise ValueError(f"{src} is already a {meta.precision} model; convert from the fp32 export")
    return meta


def convert_fp16(src: PathLike, dst: PathLike, keep_fp32_ops: Sequence[str] = FP16_KEEP_FP32_OPS) -> ArtifactMetadata:
    """Writes an fp16-typed copy of the fp32 export `src` to `dst` (float32 I/O kept)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, dst = Path(src), Path(dst)
    meta = _check_source(src, dst)
    proto = onnx.load(str(src))
    proto = convert_float_to_float16(proto, keep_io_types=True, op_block_list=list(keep_fp32_ops))
    _sort_topologically(proto.graph)  # the converter appends its input Casts at the end
    out = _derived_meta(meta, "fp16", fp32_ops=list(keep_fp32_ops), source_onnx=str(src.name))
    log.info("wrote fp16 ONNX %s (float32 kept for %s)", dst, ", ".join(keep_fp32_ops))
    return _save(proto, dst, out)


def _sort_topologically(graph) -> None:
    """Reorders `graph.node` in place so that every node follows the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ArtifactError(f"graph has a cycle or a dangling input at {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def network_input(rgb: np.ndarray, meta: ArtifactMetadata, resize: str = "stretch"):
    """(1 x 3 x H x W float32 array, ResizePlan) of an RGB frame for the exported model `meta`,
    made by the runtime's own resize and normalisation."""
    import torch

    from ..imaging.geometry import plan_resize
    from ..imaging.processing import preprocess

    info = meta.info
    plan = plan_resize((rgb.shape[1], rgb.shape[0]), tuple(meta.input_size), resize)
    x = preprocess(
        [(torch.from_numpy(np.ascontiguousarray(rgb)), "rgb8")],
        [plan],
        info.mean,
        info.std,
        torch.device("cpu"),
    )
    return x.numpy(), plan


class FrameCalibrationReader:
    """ONNX Runtime `CalibrationDataReader` over real frames, preprocessed as at run time."""

    def __init__(self, files: Sequence[Path], meta: ArtifactMetadata, resize: str = "stretch"):
        self.files = list(files)
        self.meta = meta
        self.resize = resize
        self._iter: Optional[Iterable] = None

    def _batches(self):
        from ..data.datasets import read_image

        for f in self.files:
            x = network_input(read_image(f), self.meta, self.resize)[0]
            if not self.meta.dynamic_batch and self.meta.batch > 1:
                x = np.repeat(x, self.meta.batch, axis=0)
            yield {self.meta.input_name: x}

    def get_next(self):
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def _excluded_nodes(proto, op_types: Sequence[str]) -> list[str]:
    """Nodes left in float: the classifier (the last conv before the logits) and every conv
    that feeds an attention gate (a Sigmoid), whose outputs int8 rounds most visibly."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    keep: list[str] = []
    out_name = graph.output[0].name
    node = producer.get(out_name)
    while node is not None and node.op_type not in op_types:
        node = producer.get(node.input[0]) if node.input else None
    if node is not None:
        keep.append(node.name)
    for n in graph.node:
        if n.op_type == "Sigmoid":
            src = producer.get(n.input[0])
            if src is not None and src.op_type in op_types:
                keep.append(src.name)
    return sorted(set(keep))


def quantize_int8(
    src: PathLike,
    dst: PathLike,
    calibration_images: PathLike,
    limit: int = DEFAULT_CALIBRATION_IMAGES,
    method: str = "percentile",
    resize: str = "stretch",
    keep_float: Optional[Sequence[str]] = None,
) -> ArtifactMetadata:
    """Writes a Q/DQ int8 copy of the fp32 export `src`, calibrated on real frames.

    calibration_images: folder of frames from the deployment domain (up to `limit`, spread
    evenly over the sorted files). method: 'percentile' (99.999th of |x|), 'minmax' or 'entropy'.
    keep_float: node names left unquantized; None = the classifier and the attention-gate convs.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if limit < 1:
        raise ValueError(f"calibration image limit must be at least 1, got {limit}")
    src, dst = Path(src), Path(dst)
    meta = _check_source(src, dst)
    files = calibration_files(calibration_images)
    files = files[:: max(1, len(files) // limit)][:limit]
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with tempfile.TemporaryDirectory(prefix="bevanet-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference and graph optimisation (BatchNorm folded into the convs) first, as
        # ONNX Runtime recommends: int8 must quantize the fused convolutions
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        proto = onnx.load(str(prepared))
        excluded = list(keep_float) if keep_float is not None else _excluded_nodes(proto, INT8_OP_TYPES)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            FrameCalibrationReader(files, meta, resize),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OP_TYPES),
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={
                "ActivationSymmetric": True,  # TensorRT takes zero points of 0 only
                "WeightSymmetric": True,
                "CalibPercentile": 99.999,
                "CalibMovingAverage": False,
            },
        )
        proto = onnx.load(str(quantized))
    if onnx_precision_of(proto) != "int8":
        raise ArtifactError(f"quantization of {src} produced no Q/DQ node")
    out = _derived_meta(
        meta,
        "int8",
        bn_folded=True,
        int8_mode="explicit_qdq",
        calibration_method=method,
        calibration_images=len(files),
        float_nodes=excluded,
        source_onnx=str(src.name),
    )
    out.bn_folded = True
    log.info(
        "wrote int8 Q/DQ ONNX %s (%d calibration frames, %s, %d nodes kept in float)",
        dst,
        len(files),
        method,
        len(excluded),
    )
    return _save(proto, dst, out)


def onnx_precision_of(proto) -> str:
    """`onnx_precision` of an in-memory ModelProto."""
    import onnx

    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    return "fp32"
