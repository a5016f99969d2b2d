"""Weights validated by meaning, not only by names and shapes: integer tensors where the network
has floating-point ones and a negative BatchNorm variance are refused, and so is an ONNX model
whose inputs or outputs differ in name, element type or count from its metadata; one line naming
the file and the problem, at load, before the first frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bevanet_core.checkpoint import METADATA_KEY, CheckpointError, ModelInfo, load_model
from bevanet_core.cli import predict
from bevanet_core.models import build_model
from bevanet_core.runtime import Segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: ModelInfo.default("bevanet_s", 11).to_json()})
    return path


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return build_model("bevanet_s", num_classes=11).eval().state_dict()


def test_integer_weights_are_refused_naming_file_and_tensor(state, tmp_path, capsys):
    ints = {k: (v * 100).to(torch.int32) if v.is_floating_point() else v for k, v in state.items()}
    path = _save(tmp_path / "ints.safetensors", ints)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert str(path) in message and "int32 values where the network has floating-point ones" in message
    assert "conv1.0.weight" in message and "\n" not in message
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    assert predict.main([str(image), "--weights", str(path), "--out", str(tmp_path / "out")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "int32 values" in err_lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_negative_batchnorm_variance_is_refused(state, tmp_path):
    bad = dict(state)
    key = next(k for k in state if k.endswith("running_var"))
    bad[key] = state[key].clone()
    bad[key][0] = -0.5
    path = _save(tmp_path / "negvar.safetensors", bad)
    with pytest.raises(CheckpointError, match=f"BatchNorm running variance.*below 0 .*{key}") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_half_precision_and_bfloat16_weights_still_load(state, tmp_path):
    for dtype in (torch.float16, torch.bfloat16):
        path = _save(
            tmp_path / f"{dtype}.safetensors",
            {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
        )
        model, _ = load_model(path)
        assert next(model.parameters()).dtype == torch.float32


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from bevanet_core.export.onnx import export_onnx

    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11).eval()
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(model, ModelInfo.default("bevanet_s", 11), path, input_size=(128, 128))
    return path


def _float16_input(proto):
    """The graph takes a float16 input, cast to float inside: valid ONNX that ORT loads."""
    import onnx
    from onnx import TensorProto, helper

    graph = proto.graph
    name = graph.input[0].name
    for node in graph.node:
        node.input[:] = [f"{name}_f32" if i == name else i for i in node.input]
    graph.node.insert(0, helper.make_node("Cast", [name], [f"{name}_f32"], to=TensorProto.FLOAT))
    graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(proto)


def _second_output(proto):
    from onnx import TensorProto, helper

    proto.graph.output.append(helper.make_tensor_value_info(proto.graph.node[0].output[0], TensorProto.FLOAT, None))


def _renamed_output(proto):
    graph = proto.graph
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["scores" if o == old else o for o in node.output]
    graph.output[0].name = "scores"


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_float16_input, "input 'images' is float16 but the backends feed and read float32"),
        (_second_output, "has 2 outputs"),
        (_renamed_output, "output is named 'scores' but its metadata says 'logits'"),
    ],
)
def test_onnx_inputs_and_outputs_are_checked_against_the_metadata_at_load(onnx_model, tmp_path, edit, expected):
    import onnx

    from bevanet_core.export.metadata import ArtifactError, read_onnx_metadata

    proto = onnx.load(str(onnx_model))
    edit(proto)
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ArtifactError, match=expected) as err:
        read_onnx_metadata(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ValueError, match=expected):
            Segmenter(weights=str(path), backend=backend)


def test_the_exported_model_passes_and_runs(onnx_model):
    seg = Segmenter(weights=str(onnx_model), backend="onnxruntime")
    assert seg.segment(np.zeros((128, 128, 3), np.uint8)).mask.shape == (128, 128)
