"""ONNX export: parity with PyTorch for both variants, metadata, atomicity, and the ONNX Runtime
backend agreeing with the PyTorch backend on real CamVid val frames.

One module so that the (slow on 2 cores) BEVANet-S export is shared by the parity and the
runtime tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from bevanet_core.checkpoint import ModelInfo, save_weights  # noqa: E402
from bevanet_core.cli.export import main as export_main  # noqa: E402
from bevanet_core.deploy import randomise_batchnorm  # noqa: E402
from bevanet_core.export import (  # noqa: E402
    ArtifactError,
    export_onnx,
    read_onnx_metadata,
    read_sidecar,
    sidecar_path,
)
from bevanet_core.models import build_model  # noqa: E402
from bevanet_core.runtime import Segmenter, SegmenterConfig  # noqa: E402

SIZE = (256, 128)  # (W, H) network input for the parity checks


def _data_root() -> Path:
    return Path(os.environ.get("BEVANET_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _seeded(variant: str, num_classes: int = 11, aux_heads: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(variant, num_classes=num_classes, aux_heads=aux_heads).eval()
    randomise_batchnorm(model)
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """Seeded BEVANet-S training checkpoint (with aux heads, which must be dropped) exported once
    through the bevanet-export command."""
    model = _seeded("bevanet_s", aux_heads=True)
    info = ModelInfo.default("bevanet_s", 11)
    folder = tmp_path_factory.mktemp("onnx")
    save_weights(model, folder / "w.safetensors", info)
    path = folder / "bevanet_s.onnx"
    rc = export_main(
        [
            "--weights",
            str(folder / "w.safetensors"),
            "--onnx",
            str(path),
            "--input-size",
            f"{SIZE[0]}x{SIZE[1]}",
            "--dynamic-batch",
        ]
    )
    assert rc == 0
    return model, info, path, read_sidecar(path)


def _parity(model: nn.Module, path: Path, batch: int = 1) -> float:
    x = torch.randn(batch, 3, SIZE[1], SIZE[0], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x)
        ref = ref.main if isinstance(ref, tuple) else ref
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": x.numpy()})[0]
    assert out.shape == tuple(ref.shape)
    return float(np.abs(out - ref.numpy()).max())


def test_onnx_parity_bevanet_s(small_export):
    model, _, path, _ = small_export
    diff = _parity(model, path, batch=2)  # dynamic batch axis works
    print(f"bevanet_s ONNX Runtime vs PyTorch max abs logit diff at {SIZE[0]}x{SIZE[1]}: {diff:.3e}")
    assert diff < 1e-3


def test_onnx_parity_bevanet_static_folded(tmp_path):
    model = _seeded("bevanet")
    path = tmp_path / "bevanet.onnx"
    meta = export_onnx(model, ModelInfo.default("bevanet", 11), path, input_size=SIZE, fold_bn=True)
    assert meta.bn_folded and not meta.dynamic_batch
    graph_input = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in graph_input] == [1, 3, SIZE[1], SIZE[0]]  # fully static
    diff = _parity(model, path)
    print(f"bevanet (BN folded) ONNX Runtime vs PyTorch max abs logit diff at {SIZE[0]}x{SIZE[1]}: {diff:.3e}")
    assert diff < 1e-3


def test_onnx_metadata_inside_and_in_sidecar(small_export):
    model, info, path, meta = small_export
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    assert [o.name for o in proto.graph.output] == ["logits"]  # main logits only, no aux heads
    inside = read_onnx_metadata(path)
    side = read_sidecar(path)
    for m in (inside, side):
        assert m.model_info["variant"] == "bevanet_s" and m.model_info["class_names"] == info.class_names
        assert m.model_info["palette"] == info.palette and m.model_info["mean"] == info.mean
        assert tuple(m.input_size) == SIZE and m.precision == "fp32" and m.dynamic_batch
        assert len(m.model_hash) == 64 and "torch" in m.versions and "onnx" in m.versions
    assert side.file_sha256 and inside.model_hash == side.model_hash
    assert inside.info.input_size == SIZE
    # a damaged artifact is noticed through its sidecar
    data = bytearray(path.read_bytes())
    copy = path.with_name("copy.onnx")
    copy.write_bytes(bytes(data[:-10]) + b"0123456789")
    sidecar_path(copy).write_text(sidecar_path(path).read_text())
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        read_sidecar(copy)


def test_export_rejects_bad_arguments_and_leaves_nothing(tmp_path):
    model, info = nn.Identity(), ModelInfo.default("bevanet_s", 11)
    with pytest.raises(ValueError, match="divisible by 8"):
        export_onnx(model, info, tmp_path / "m.onnx", input_size=(100, 64))
    with pytest.raises(ValueError, match="opset must be 17 or newer"):
        export_onnx(model, info, tmp_path / "m.onnx", input_size=(64, 64), opset=13)
    with pytest.raises(ValueError, match="no input_size given"):
        export_onnx(model, info, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(model, info, tmp_path / "m.engine", input_size=(64, 64))

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        export_onnx(Broken(), info, tmp_path / "m.onnx", input_size=(64, 64))
    assert list(tmp_path.iterdir()) == []  # atomic: no half-written file or sidecar
    with pytest.raises(ArtifactError, match="not found"):
        read_onnx_metadata(tmp_path / "missing.onnx")


def test_export_cli_errors(tmp_path, capsys):
    assert export_main(["--weights", str(tmp_path / "none.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert export_main(["--onnx", str(tmp_path / "absent.onnx"), "--engine", str(tmp_path / "m.engine")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _camvid_frames(n: int = 3):
    folder = _data_root() / "camvid" / "val"
    files = sorted(folder.glob("*.png"))[:n]
    if len(files) < n:
        pytest.skip(f"shared data missing: {folder}")
    from PIL import Image

    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def test_onnxruntime_and_torch_backends_agree_on_camvid(small_export):
    model, info, path, _ = small_export
    frames = _camvid_frames(3)
    assert frames[0].shape == (360, 480, 3)
    ort_seg = Segmenter(SegmenterConfig(weights=str(path), backend="onnxruntime"))
    torch_seg = Segmenter.from_model(model, info, input_size=SIZE)
    assert ort_seg.input_size == SIZE and ort_seg.info.class_names == info.class_names
    agree = total = 0
    for resize in ("stretch", "letterbox"):
        for seg in (ort_seg, torch_seg):
            seg.config.resize = resize
            seg._plans.clear()
        a = ort_seg.segment_batch(frames, "rgb8", confidence=True)
        b = torch_seg.segment_batch(frames, "rgb8", confidence=True)
        for ra, rb in zip(a, b, strict=True):
            assert ra.mask.shape == (360, 480)
            agree += int((ra.mask == rb.mask).sum())
            total += ra.mask.size
            assert np.abs(ra.confidence.astype(int) - rb.confidence.astype(int)).max() <= 1
    ratio = agree / total
    print(f"ONNX Runtime vs PyTorch label agreement on {len(frames)} CamVid val frames x 2 resize modes: {ratio:.6f}")
    assert ratio > 0.999


def test_onnxruntime_backend_from_checkpoint_uses_cache(tmp_path, small_export):
    model, info, _, _ = small_export
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights, ModelInfo.default("bevanet_s", 11, input_size=SIZE))
    cfg = SegmenterConfig(weights=str(weights), backend="onnxruntime", cache_dir=str(tmp_path / "cache"))
    seg = Segmenter(cfg)
    exported = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(exported) == 1 and seg.input_size == SIZE
    stamp = exported[0].stat().st_mtime_ns
    Segmenter(cfg)  # second time: cached
    assert exported[0].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="differs from the 256x128"):
        Segmenter(SegmenterConfig(weights=str(exported[0]), backend="onnxruntime", input_size=(128, 64)))
    with pytest.raises(ValueError, match="not supported by the onnxruntime backend"):
        Segmenter(SegmenterConfig(weights=str(exported[0]), backend="onnxruntime", precision="bf16"))
    with pytest.raises(ValueError, match="needs calibration_images"):
        Segmenter(SegmenterConfig(weights=str(exported[0]), backend="onnxruntime", precision="int8"))
    meta = json.loads(sidecar_path(exported[0]).read_text())
    assert meta["format"] == "onnx" and meta["model_info"]["input_size"] == list(SIZE)


def test_engine_build_without_tensorrt_says_so(small_export, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; test/test_tensorrt.py covers the build")
    except ImportError:
        pass
    _, _, path, _ = small_export
    assert export_main(["--onnx", str(path), "--engine", str(tmp_path / "m.engine")]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs device='cuda'"):
        Segmenter(SegmenterConfig(weights=str(path), backend="tensorrt"))
