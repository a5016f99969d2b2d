"""Explicit-precision ONNX exports: fp16-typed graphs and int8 Q/DQ graphs, made by
`bevanet-export --precision`, checked against fp32 on real CamVid val frames in ONNX Runtime.

The shipped model at a reduced size keeps this quick; `benchmarks/bench_precision.py` gives the
full-size mIoU figures.
"""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from bevanet_core.cli.export import main as export_main  # noqa: E402
from bevanet_core.export import read_onnx_metadata  # noqa: E402
from bevanet_core.export.precision import convert_fp16, onnx_precision  # noqa: E402
from bevanet_core.runtime import Segmenter, SegmenterConfig  # noqa: E402

SIZE = "256x128"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def camvid(shared_data):
    root = shared_data / "camvid"
    if not (root / "val").is_dir() or not (root / "train").is_dir():
        pytest.skip(f"CamVid train/val missing under {root}")
    return root


@pytest.fixture(scope="module")
def exports(camvid, tmp_path_factory):
    out = tmp_path_factory.mktemp("precision")
    calib = out / "calib"
    calib.mkdir()
    for f in sorted((camvid / "train").glob("*.png"))[::46][:8]:  # 8 frames across the drives
        (calib / f.name).symlink_to(f)
    paths = {p: out / f"m.{p}.onnx" for p in ("fp32", "fp16", "int8")}
    assert export_main(["--input-size", SIZE, "--onnx", str(paths["fp32"])]) == 0
    assert export_main(["--input-size", SIZE, "--onnx", str(paths["fp16"]), "--precision", "fp16"]) == 0
    rc = export_main(
        ["--input-size", SIZE, "--onnx", str(paths["int8"]), "--precision", "int8"]
        + ["--calib-images", str(calib), "--calib-count", "8"]
    )
    assert rc == 0
    return paths, calib


def _logits(path, frames):
    from bevanet_core.export.precision import network_input

    meta = read_onnx_metadata(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: network_input(f, meta)[0]})[0] for f in frames])


@pytest.fixture(scope="module")
def val_frames(camvid):
    from bevanet_core.data.datasets import read_image

    return [read_image(f) for f in sorted((camvid / "val").glob("*.png"))[::25][:4]]


def test_fp16_export_is_fp16_typed_with_float32_io(exports):
    paths, _ = exports
    model = onnx.load(str(paths["fp16"]))
    inits = [t.data_type for t in model.graph.initializer]
    assert inits.count(onnx.TensorProto.FLOAT16) > 0.9 * len(inits)
    io = [model.graph.input[0], model.graph.output[0]]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
    meta = read_onnx_metadata(paths["fp16"])
    assert meta.precision == "fp16" and onnx_precision(paths["fp16"]) == "fp16"
    # normalisation stays float32: LayerNorm's scale is a float32 initializer
    ln = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert ln, "BEVANet-S has LayerNorms"
    kinds = {t.name: t.data_type for t in model.graph.initializer}
    assert all(kinds.get(n.input[1]) == onnx.TensorProto.FLOAT for n in ln)


def test_fp16_matches_fp32_on_camvid_frames(exports, val_frames):
    paths, _ = exports
    ref, got = _logits(paths["fp32"], val_frames), _logits(paths["fp16"], val_frames)
    assert np.abs(ref - got).max() < 0.1
    assert (ref.argmax(1) == got.argmax(1)).mean() > 0.995


def test_int8_export_is_symmetric_qdq_and_keeps_agreement(exports, val_frames):
    paths, _ = exports
    model = onnx.load(str(paths["int8"]))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2:
            zp = onnx.numpy_helper.to_array(inits[n.input[2]])
            assert zp.dtype == np.int8 and not zp.any(), "TensorRT needs zero points of 0"
    meta = read_onnx_metadata(paths["int8"])
    assert meta.precision == "int8" and meta.extra["int8_mode"] == "explicit_qdq"
    assert meta.extra["calibration_images"] == 8 and meta.extra["float_nodes"]
    ref, got = _logits(paths["fp32"], val_frames), _logits(paths["int8"], val_frames)
    assert (ref.argmax(1) == got.argmax(1)).mean() > 0.95


def test_flags_that_would_not_be_honoured_are_refused(exports, tmp_path, capsys):
    paths, calib = exports
    out = str(tmp_path / "m.onnx")
    assert export_main(["--input-size", SIZE, "--onnx", out, "--precision", "int8"]) == 2
    assert "needs --calib-images" in capsys.readouterr().err
    assert export_main(["--input-size", SIZE, "--onnx", out, "--calib-images", str(calib)]) == 2
    assert "only used with --precision int8" in capsys.readouterr().err
    with pytest.raises(ValueError, match="already a fp16 model"):
        convert_fp16(paths["fp16"], tmp_path / "again.onnx")


def test_runtime_runs_each_precision_and_refuses_a_mismatch(exports, val_frames, tmp_path):
    paths, calib = exports
    masks = {}
    for p in ("fp32", "fp16", "int8"):
        seg = Segmenter(SegmenterConfig(weights=str(paths[p]), backend="onnxruntime", precision=p))
        masks[p] = seg.segment(val_frames[0]).mask
    assert (masks["fp16"] == masks["fp32"]).mean() > 0.99
    assert (masks["int8"] == masks["fp32"]).mean() > 0.9
    with pytest.raises(ValueError, match="is a int8 model but precision 'fp32' was asked for"):
        Segmenter(SegmenterConfig(weights=str(paths["int8"]), backend="onnxruntime", precision="fp32"))
    # from a checkpoint: exported, converted and cached on first use
    cfg = SegmenterConfig(
        backend="onnxruntime",
        precision="int8",
        input_size=SIZE,
        calibration_images=str(calib),
        cache_dir=str(tmp_path),
    )
    seg = Segmenter(cfg)
    assert onnx_precision(seg.backend.path) == "int8"
    assert (seg.segment(val_frames[0]).mask == masks["fp32"]).mean() > 0.9


def test_the_precision_comes_from_the_file(exports, val_frames, tmp_path):
    """No precision given: each exported file runs at its own, on every backend that takes it."""
    paths, _ = exports
    for p in ("fp32", "fp16", "int8"):
        seg = Segmenter(SegmenterConfig(weights=str(paths[p]), backend="onnxruntime", cache_dir=str(tmp_path)))
        assert seg.config.precision == p and seg.backend.path == paths[p]  # loaded as it is, nothing converted
    assert not (tmp_path / "onnx").exists()
    seg = Segmenter(SegmenterConfig(weights=str(paths["int8"]), backend="openvino"))
    assert seg.config.precision == "int8"
    # a flag that contradicts the file: one line naming both
    for p, asked in (("int8", "fp16"), ("fp16", "int8"), ("fp16", "fp32")):
        with pytest.raises(ValueError, match=f"is a {p} model but precision '{asked}' was asked for") as err:
            Segmenter(SegmenterConfig(weights=str(paths[p]), backend="onnxruntime", precision=asked))
        assert "\n" not in str(err.value)


def test_cli_tools_need_no_precision_flag(exports, camvid, tmp_path, capsys):
    """bevanet-predict and bevanet-eval take an int8 ONNX as it is (no --precision)."""
    from bevanet_core.cli.evaluate import main as eval_main
    from bevanet_core.cli.predict import main as predict_main

    paths, _ = exports
    frame = sorted((camvid / "val").glob("*.png"))[0]
    out = tmp_path / "predict"
    assert predict_main(["--weights", str(paths["int8"]), str(frame), "--out", str(out)]) == 0
    assert (out / "masks" / f"{frame.stem}.png").is_file()
    assert "int8" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    args = ["--dataset", "camvid", "--root", str(camvid), "--split", "val", "--max-frames", "2", "--json", str(report)]
    assert eval_main(["--weights", str(paths["int8"])] + args) == 0
    import json

    pipeline = json.loads(report.read_text())
    assert pipeline["precision"] == "int8" and pipeline["backend"] in ("onnxruntime", "openvino")
    assert predict_main(["--weights", str(paths["int8"]), "--precision", "fp32", str(frame), "--out", str(out)]) == 2
    assert "is a int8 model but precision 'fp32' was asked for" in capsys.readouterr().err


def test_openvino_ir_carries_its_precision(exports, val_frames, tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from bevanet_core.export.metadata import artifact_precision, read_ir_metadata

    paths, _ = exports
    irs = {}
    for p in ("fp32", "int8"):
        irs[p] = tmp_path / f"m.{p}.xml"
        assert export_main(["--onnx", str(paths[p]), "--openvino", str(irs[p])]) == 0
        assert irs[p].with_suffix(".bin").is_file() and artifact_precision(irs[p]) == p
        meta = read_ir_metadata(irs[p])
        assert meta.format == "openvino" and meta.input_size == read_onnx_metadata(paths[p]).input_size
    reference = Segmenter(SegmenterConfig(weights=str(paths["int8"]), backend="openvino")).segment(val_frames[0])
    seg = Segmenter(SegmenterConfig(weights=str(irs["int8"])))  # backend auto: the IR leaves only openvino
    assert seg.backend.name == "openvino" and seg.config.precision == "int8"
    assert (seg.segment(val_frames[0]).mask == reference.mask).mean() > 0.99
    with pytest.raises(ValueError, match="is a int8 model but precision 'fp32' was asked for"):
        Segmenter(SegmenterConfig(weights=str(irs["int8"]), backend="openvino", precision="fp32"))
    from bevanet_core.cli.predict import main as predict_main

    frame = sorted((exports[1].parent / "calib").glob("*.png"))[0]
    out = tmp_path / "predict"
    assert predict_main(["--weights", str(irs["int8"]), str(frame), "--out", str(out)]) == 0  # no flag
    assert (out / "masks" / f"{frame.stem}.png").is_file()
    with pytest.raises(ValueError, match="is an OpenVINO IR; use backend 'openvino'"):
        Segmenter(SegmenterConfig(weights=str(irs["fp32"]), backend="onnxruntime"))
    assert (
        export_main(["--onnx", str(paths["int8"]), "--openvino", str(tmp_path / "x.xml"), "--precision", "fp32"]) == 2
    )


def test_an_engine_sidecar_names_its_precision(exports, tmp_path):
    """A TensorRT engine's precision is read from its sidecar, without tensorrt or a GPU."""
    import dataclasses

    from bevanet_core.export.metadata import artifact_precision, write_sidecar
    from bevanet_core.runtime.loading import resolve_precision

    paths, _ = exports
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    write_sidecar(engine, dataclasses.replace(read_onnx_metadata(paths["int8"]), format="tensorrt"))
    assert artifact_precision(engine) == "int8"
    assert resolve_precision(str(engine), "auto") == "int8"
    with pytest.raises(ValueError, match="m.engine is a int8 model but precision 'fp16' was asked for"):
        resolve_precision(str(engine), "fp16")
