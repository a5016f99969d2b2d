"""TensorRT engines and backend: run wherever `tensorrt` imports and a CUDA GPU is present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed (NVIDIA wheels; not installable here)")
if not torch.cuda.is_available():
    pytest.skip("TensorRT tests need a CUDA GPU and a CUDA build of PyTorch", allow_module_level=True)

from bevanet_core.checkpoint import ModelInfo  # noqa: E402
from bevanet_core.export import export_onnx, read_sidecar  # noqa: E402
from bevanet_core.export.metadata import ArtifactError, sidecar_path  # noqa: E402
from bevanet_core.export.precision import convert_fp16, quantize_int8  # noqa: E402
from bevanet_core.export.tensorrt import TargetEnvironment, build_engine, check_engine  # noqa: E402
from bevanet_core.models import build_model  # noqa: E402
from bevanet_core.runtime import Segmenter, SegmenterConfig  # noqa: E402

SIZE = (256, 128)


def _data_root() -> Path:
    return Path(os.environ.get("BEVANET_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11).eval()
    info = ModelInfo.default("bevanet_s", 11)
    path = tmp_path_factory.mktemp("trt") / "bevanet_s.onnx"
    export_onnx(model, info, path, input_size=SIZE, dynamic_batch=True)
    return model, info, path


def _frames(n: int = 2):
    from PIL import Image

    files = sorted((_data_root() / "camvid" / "val").glob("*.png"))[:n]
    if len(files) < n:
        pytest.skip("shared CamVid val frames missing")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


@pytest.mark.parametrize("precision,min_agree", [("fp32", 0.999), ("fp16", 0.99), ("int8", 0.95)])
def test_strongly_typed_engine_matches_torch(exported, tmp_path, precision, min_agree):
    model, info, onnx_path = exported
    if precision == "fp16":
        onnx_path = tmp_path / "m.fp16.onnx"
        convert_fp16(exported[2], onnx_path)
    elif precision == "int8":
        onnx_path = tmp_path / "m.int8.onnx"
        quantize_int8(exported[2], onnx_path, _data_root() / "camvid" / "val", limit=8)
    engine = tmp_path / f"m_{precision}.engine"
    meta = build_engine(onnx_path, engine, max_batch=2)  # the precision is the ONNX's own
    assert meta.precision == precision and meta.versions["tensorrt"] == trt.__version__
    assert meta.extra["strongly_typed"] is True
    assert check_engine(engine, TargetEnvironment.current()).batch == 2
    frames = _frames(2)
    trt_seg = Segmenter(SegmenterConfig(weights=str(engine), backend="tensorrt", device="cuda"))
    ref_seg = Segmenter.from_model(model, info, backend="torch", input_size=SIZE, device="cuda", cuda_graphs=False)
    out = trt_seg.segment_batch(frames, "rgb8")
    ref = ref_seg.segment_batch(frames, "rgb8")
    agree = np.mean([(a.mask == b.mask).mean() for a, b in zip(out, ref, strict=True)])
    assert agree > min_agree, f"{precision}: label agreement {agree:.5f}"
    trt_seg.close()


def test_engine_precision_other_than_the_onnx_is_refused(exported, tmp_path):
    with pytest.raises(ValueError, match="strongly typed"):
        build_engine(exported[2], tmp_path / "m.engine", precision="fp16")


def test_runtime_engine_cache_and_stale_engine_rebuild(exported, tmp_path):
    _, _, onnx_path = exported
    cfg = SegmenterConfig(
        weights=str(onnx_path),
        backend="tensorrt",
        device="cuda",
        precision="fp16",
        cache_dir=str(tmp_path),
    )
    Segmenter(cfg)
    engines = list((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 1
    # pretend the engine came from another GPU: refused, or rebuilt from its ONNX
    side = sidecar_path(engines[0])
    text = side.read_text().replace(
        f'"compute_capability": "{TargetEnvironment.current().compute_capability}"',
        '"compute_capability": "1.0"',
    )
    side.write_text(text)
    with pytest.raises(ArtifactError, match="compute capability 1.0"):
        Segmenter(
            SegmenterConfig(
                weights=str(engines[0]),
                backend="tensorrt",
                device="cuda",
                rebuild_stale_engine=False,
            )
        )
    seg = Segmenter(
        SegmenterConfig(
            weights=str(engines[0]),
            backend="tensorrt",
            device="cuda",
            cache_dir=str(tmp_path / "rebuilt"),
        )
    )
    assert read_sidecar(seg.backend.path).device["compute_capability"] != "1.0"
