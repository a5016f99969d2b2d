"""TensorRT engine cache keys, sidecars and staleness: plain Python, no tensorrt or GPU needed."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from bevanet_core.checkpoint import ModelInfo
from bevanet_core.export.metadata import (
    ArtifactError,
    ArtifactMetadata,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from bevanet_core.export.precision import calibration_files, calibration_hash
from bevanet_core.export.tensorrt import (
    EngineKey,
    TargetEnvironment,
    check_engine,
    engine_key,
    engine_metadata,
    stale_reasons,
)

H100 = TargetEnvironment("10.8.0.43", "9.0", "NVIDIA H100 80GB HBM3")
ORIN = TargetEnvironment("10.3.0", "8.7", "Orin")


def _onnx(tmp_path: Path) -> tuple:
    """A stand-in ONNX file with the metadata an export would carry."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx, but hashed like one")
    info = dataclasses.asdict(ModelInfo.default("bevanet_s", 11, input_size=(480, 360)))
    meta = ArtifactMetadata(
        format="onnx",
        model_info=info,
        input_size=(480, 360),
        batch=1,
        dynamic_batch=True,
        model_hash="ab" * 32,
        opset=17,
    )
    return path, meta


def _engine(tmp_path: Path, env: TargetEnvironment, precision: str = "fp16") -> Path:
    onnx_path, onnx_meta = _onnx(tmp_path)
    key = engine_key(onnx_path, onnx_meta, precision, env, max_batch=4)
    engine = tmp_path / key.filename("bevanet_s")
    engine.write_bytes(b"serialized engine bytes")
    write_sidecar(engine, engine_metadata(onnx_meta, onnx_path, key, env))
    return engine


def test_engine_key_changes_with_every_input(tmp_path):
    onnx_path, meta = _onnx(tmp_path)
    base = engine_key(onnx_path, meta, "fp16", H100, 1)
    variants = [
        engine_key(onnx_path, meta, "int8", H100, 1, calibration_hash="c0ffee"),
        engine_key(onnx_path, meta, "fp32", H100, 1),
        engine_key(onnx_path, meta, "fp16", ORIN, 1),
        engine_key(onnx_path, meta, "fp16", dataclasses.replace(H100, trt_version="10.9.0"), 1),
        engine_key(onnx_path, meta, "fp16", H100, 8),
        engine_key(onnx_path, dataclasses.replace(meta, input_size=(960, 720)), "fp16", H100, 1),
    ]
    digests = {base.digest()} | {k.digest() for k in variants}
    assert len(digests) == 1 + len(variants)
    assert engine_key(onnx_path, meta, "fp16", H100, 1) == base  # deterministic
    onnx_path.write_bytes(b"different weights")
    assert engine_key(onnx_path, meta, "fp16", H100, 1).digest() != base.digest()
    # calibration data only matters for int8
    assert engine_key(onnx_path, meta, "fp16", H100, 1, "x") == engine_key(onnx_path, meta, "fp16", H100, 1)
    name = base.filename("bevanet_s")
    assert name.startswith("bevanet_s-480x360-b1-fp16-trt10.8.0.43-sm90-") and name.endswith(".engine")
    with pytest.raises(ValueError, match="precision must be one of"):
        engine_key(onnx_path, meta, "bf16", H100, 1)


def test_engine_sidecar_records_environment_and_source(tmp_path):
    engine = _engine(tmp_path, H100)
    meta = read_sidecar(engine)
    assert meta.format == "tensorrt" and meta.precision == "fp16" and meta.batch == 4
    assert meta.versions["tensorrt"] == "10.8.0.43"
    assert meta.device == {"compute_capability": "9.0", "gpu_name": "NVIDIA H100 80GB HBM3"}
    assert meta.extra["source_onnx"] == str((tmp_path / "model.onnx").resolve())
    assert meta.info.class_names[0] == "Sky" and meta.info.input_size == (480, 360)
    assert meta.source_hash and meta.model_hash == "ab" * 32 and meta.file_sha256
    assert check_engine(engine, H100).extra["cache_key"] in engine.name


def test_engine_from_another_gpu_or_tensorrt_is_refused_with_both_named(tmp_path):
    engine = _engine(tmp_path, ORIN)
    reasons = stale_reasons(read_sidecar(engine), H100)
    assert len(reasons) == 2
    with pytest.raises(ArtifactError) as err:
        check_engine(engine, H100)
    text = str(err.value)
    assert "TensorRT 10.3.0" in text and "TensorRT 10.8.0.43" in text
    assert "compute capability 8.7 (Orin)" in text and "9.0 (NVIDIA H100 80GB HBM3)" in text
    assert "bevanet-export --onnx" in text  # how to fix it
    same_gpu_new_trt = dataclasses.replace(ORIN, trt_version="10.4.0")
    assert stale_reasons(read_sidecar(engine), same_gpu_new_trt) == [
        "built with TensorRT 10.3.0, this process has TensorRT 10.4.0"
    ]


def test_replaced_or_unlabelled_engine_is_refused(tmp_path):
    engine = _engine(tmp_path, H100)
    engine.write_bytes(b"an engine from somewhere else")
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        check_engine(engine, H100)
    os.unlink(sidecar_path(engine))
    with pytest.raises(ArtifactError, match="sidecar .* is missing"):
        check_engine(engine, H100)
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"x")
    sidecar_path(bad).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable bevanet metadata"):
        check_engine(bad, H100)


def test_onnx_sidecar_is_not_an_engine(tmp_path):
    onnx_path, meta = _onnx(tmp_path)
    write_sidecar(onnx_path, meta)
    assert "not a TensorRT engine" in stale_reasons(read_sidecar(onnx_path), H100)[0]


def test_calibration_files_and_hash(tmp_path):
    with pytest.raises(ValueError, match="calibration image folder not found"):
        calibration_files(tmp_path / "nope")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        calibration_files(tmp_path / "imgs")
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(b"p" * (i + 1))
    files = calibration_files(tmp_path / "imgs")
    assert [f.name for f in files] == ["0.png", "1.png", "2.png"]
    assert len(calibration_files(tmp_path / "imgs", limit=2)) == 2
    h = calibration_hash(files, "stretch")
    assert h == calibration_hash(files, "stretch") != calibration_hash(files, "letterbox")
    assert calibration_hash(files[:2], "stretch") != h


def test_engine_key_is_json_stable():
    key = EngineKey("f" * 64, "int8", "10.8.0", "9.0", (480, 360), 2, "abc")
    assert json.loads(json.dumps(dataclasses.asdict(key)))["input_size"] == [480, 360]
    assert key.digest() == EngineKey("f" * 64, "int8", "10.8.0", "9.0", (480, 360), 2, "abc").digest()


def test_stale_engine_rebuild_reads_its_source_from_the_sidecar(tmp_path):
    """What the runtime rebuilds a stale engine from: the sidecar's source ONNX, read through
    export.metadata (the precision is that ONNX's own: strongly typed builds); without a readable
    sidecar there is nothing to rebuild."""
    from bevanet_core.runtime.tensorrt_backend import _source_onnx

    engine = _engine(tmp_path, ORIN, precision="int8")
    assert _source_onnx(engine) == (tmp_path / "model.onnx").resolve()
    engine.write_bytes(b"replaced")  # a stale engine is still rebuilt from its source
    assert _source_onnx(engine) == (tmp_path / "model.onnx").resolve()
    (tmp_path / "model.onnx").unlink()
    assert _source_onnx(engine) is None
    sidecar_path(engine).write_text("{not json")
    assert _source_onnx(engine) is None
