"""GPU paths of the runtime (fp16/bf16, channels_last, folded BN, CUDA graphs, ONNX Runtime CUDA).

Runs only where PyTorch sees a CUDA GPU; elsewhere the module is skipped, saying so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU visible to PyTorch (CPU-only build or machine)", allow_module_level=True)

from bevanet_core.checkpoint import ModelInfo  # noqa: E402
from bevanet_core.models import build_model  # noqa: E402
from bevanet_core.runtime import Segmenter  # noqa: E402

SIZE = (256, 128)


@pytest.fixture(scope="module")
def model_info():
    torch.manual_seed(0)
    return build_model("bevanet_s", num_classes=11).eval(), ModelInfo.default("bevanet_s", 11)


def _frames():
    rng = np.random.default_rng(0)
    # smooth random images, so that labels are not dominated by per-pixel noise
    base = rng.integers(0, 256, size=(3, 12, 16, 3), dtype=np.uint8).astype(np.float32)
    frames = [np.kron(b, np.ones((30, 30, 1), np.float32)).astype(np.uint8) for b in base]
    return frames[:2] + [frames[2][:301, :433]]


@pytest.mark.parametrize(
    "precision,graphs,min_agree",
    [("fp32", False, 0.999), ("fp32", True, 0.999), ("fp16", True, 0.98), ("bf16", True, 0.95)],
)
def test_cuda_torch_backend_matches_cpu(model_info, precision, graphs, min_agree):
    model, info = model_info
    cpu = Segmenter.from_model(model, info, input_size=SIZE)
    gpu = Segmenter.from_model(model, info, input_size=SIZE, device="cuda", precision=precision, cuda_graphs=graphs)
    assert gpu.backend.channels_last and gpu.backend.fold_report.num_folded > 60
    frames = _frames()
    for _ in range(2):  # the second call replays the captured graph
        out = gpu.segment_batch(frames, "rgb8", confidence=True, color=True)
    ref = cpu.segment_batch(frames, "rgb8")
    for a, b, f in zip(out, ref, frames, strict=True):
        assert a.mask.shape == f.shape[:2] and a.color.shape == f.shape
        assert (a.mask == b.mask).mean() > min_agree, precision
    gpu.close()


def test_cuda_letterbox_and_labels_upsampling(model_info):
    model, info = model_info
    frame = _frames()[2]
    cpu = Segmenter.from_model(model, info, input_size=SIZE, resize="letterbox", upsample="labels")
    gpu = Segmenter.from_model(model, info, input_size=SIZE, resize="letterbox", upsample="labels", device="cuda")
    assert (gpu.segment(frame).mask == cpu.segment(frame).mask).mean() > 0.999


def test_cuda_accepts_frames_already_on_the_gpu(model_info):
    model, info = model_info
    seg = Segmenter.from_model(model, info, input_size=SIZE, device="cuda")
    frame = _frames()[0]
    on_gpu = torch.from_numpy(frame).cuda()
    np.testing.assert_array_equal(seg.segment(on_gpu).mask, seg.segment(frame).mask)


def test_onnxruntime_cuda_provider(model_info, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
    model, info = model_info
    frames = _frames()
    cpu = Segmenter.from_model(model, info, input_size=SIZE)
    gpu = Segmenter.from_model(
        model, info, input_size=SIZE, backend="onnxruntime", device="cuda", cache_dir=str(tmp_path)
    )
    for a, b in zip(gpu.segment_batch(frames), cpu.segment_batch(frames), strict=True):
        assert (a.mask == b.mask).mean() > 0.999
