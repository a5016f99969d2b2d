"""OpenVINO IR (`model.xml` + `model.bin`) from an exported ONNX model.

The IR keeps what the ONNX carries: its precision (int8 Q/DQ pairs become FakeQuantize nodes,
fp16-typed tensors stay fp16) and the bevanet metadata, written into the IR's runtime info under
`bevanet` and into the sidecar `model.xml.json`, so that the runtime reads the model's precision,
input size and classes from the file (`metadata.read_ir_metadata`). Weights are stored as they
are in the ONNX (no fp16 compression of an fp32 model: its precision stays what the file says).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

from .metadata import METADATA_KEY, ArtifactMetadata, PathLike, now_iso, read_onnx_metadata, write_sidecar

log = logging.getLogger(__name__)


def export_openvino_ir(src: PathLike, dst: PathLike) -> ArtifactMetadata:
    """Converts the exported ONNX model `src` to the OpenVINO IR `dst` (.xml, its .bin beside it)."""
    try:
        import openvino as ov
    except ImportError:
        raise ValueError("writing an OpenVINO IR needs the openvino package (pip install openvino)") from None
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".xml":
        raise ValueError(f"OpenVINO IR path must end in .xml, got {dst}")
    meta = read_onnx_metadata(src)
    model = ov.convert_model(str(src))
    out = dataclasses.replace(
        meta,
        format="openvino",
        created=now_iso(),
        versions={**meta.versions, "openvino": ov.__version__},
        extra={**meta.extra, "source_onnx": src.name},
    )
    model.set_rt_info(out.to_json(with_file_hash=False), [METADATA_KEY])
    # written beside the target, then moved into place: the .bin first, the .xml last, so that a
    # reader never finds an .xml without its weights (OpenVINO finds model.bin by the .xml's name)
    with tempfile.TemporaryDirectory(prefix=".bevanet-ir-", dir=dst.parent) as tmp:
        staged = Path(tmp) / dst.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), dst.with_suffix(".bin"))
        os.replace(staged, dst)
    write_sidecar(dst, out)
    log.info("wrote OpenVINO IR %s (%s) from %s", dst, out.precision, src.name)
    return out
