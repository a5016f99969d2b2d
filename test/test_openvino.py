"""OpenVINO backend: parity with the torch backend on real CamVid val frames (fp32, bf16 where the
CPU has it, int8 from the Q/DQ ONNX), thread settings, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the int8 quantization")

from bevanet_core.runtime import Segmenter, SegmenterConfig  # noqa: E402
from bevanet_core.runtime.openvino_backend import cpu_capabilities  # noqa: E402

SIZE = (256, 128)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frames(shared_data):
    from bevanet_core.data.datasets import read_image

    files = sorted((shared_data / "camvid" / "val").glob("*.png"))[::30][:3]
    if len(files) < 3:
        pytest.skip("CamVid val frames missing")
    return [read_image(f) for f in files]


@pytest.fixture(scope="module")
def reference(frames):
    seg = Segmenter(backend="torch", input_size=SIZE)
    return [r.mask for r in seg.segment_batch(frames)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ov-cache"))


def _agreement(seg, frames, reference) -> float:
    masks = [r.mask for r in seg.segment_batch(frames)]
    return float(np.mean([(a == b).mean() for a, b in zip(masks, reference, strict=True)]))


def test_openvino_fp32_matches_torch(frames, reference, cache):
    seg = Segmenter(backend="openvino", input_size=SIZE, num_threads=1, cache_dir=cache)
    assert seg.backend.name == "openvino" and seg.backend.config["INFERENCE_NUM_THREADS"] == 1
    assert seg.backend.config["INFERENCE_PRECISION_HINT"] == "f32"
    assert _agreement(seg, frames, reference) > 0.999
    # batches of several cameras: one compiled model per batch size
    out = seg.segment_batch(frames[:2])
    assert [r.mask.shape for r in out] == [f.shape[:2] for f in frames[:2]]
    assert {2, 3} <= set(seg.backend._compiled)


def test_openvino_bf16_where_the_cpu_has_it(frames, reference, cache):
    if "BF16" not in cpu_capabilities():
        with pytest.raises(ValueError, match="needs a CPU with BF16"):
            Segmenter(backend="openvino", precision="bf16", input_size=SIZE, cache_dir=cache)
        return
    seg = Segmenter(backend="openvino", precision="bf16", input_size=SIZE, cache_dir=cache)
    assert seg.backend.config["INFERENCE_PRECISION_HINT"] == "bf16"
    assert _agreement(seg, frames, reference) > 0.98


def test_openvino_int8_from_the_qdq_onnx(shared_data, frames, reference, cache, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in sorted((shared_data / "camvid" / "train").glob("*.png"))[::46][:8]:
        (calib / f.name).symlink_to(f)
    cfg = SegmenterConfig(
        backend="openvino",
        precision="int8",
        input_size=SIZE,
        calibration_images=str(calib),
        cache_dir=cache,
    )
    seg = Segmenter(cfg)
    assert "int8" in seg.backend.path.name
    assert _agreement(seg, frames, reference) > 0.9


def test_openvino_refusals(cache, tmp_path):
    import torch

    from bevanet_core.runtime.openvino_backend import OpenVINOBackend

    with pytest.raises(ValueError, match="CPU only"):
        OpenVINOBackend(tmp_path / "m.onnx", torch.device("cuda"))
    if "FP16" not in cpu_capabilities():
        with pytest.raises(ValueError, match="needs a CPU with FP16"):
            Segmenter(backend="openvino", precision="fp16", input_size=SIZE, cache_dir=cache)
    with pytest.raises(ValueError, match="needs calibration_images"):
        Segmenter(backend="openvino", precision="int8", input_size=SIZE, cache_dir=cache)
