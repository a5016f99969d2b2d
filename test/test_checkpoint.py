"""Weights I/O: the authors' tensor names map one to one; bad files give one clear error."""

import io
from pathlib import Path

import pytest
import torch

from bevanet_core.checkpoint import (
    CheckpointError,
    ModelInfo,
    load_model,
    load_state_dict_strict,
    read_checkpoint,
    save_weights,
)
from bevanet_core.models import build_model

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"


def authors_tensors(tsv: Path):
    if not tsv.is_file():
        pytest.skip(f"spec file missing: {tsv}")
    rows = [line.rstrip("\n").split("\t") for line in tsv.read_text().splitlines() if not line.startswith("#")]
    return {k: tuple(int(s) for s in shape.split("x")) if shape else () for k, shape in rows}


@pytest.mark.parametrize(
    "tsv,variant",
    [("bevanet_cityscapes19_state_dict.tsv", "bevanet"), ("bevanet_s_cityscapes19_state_dict.tsv", "bevanet_s")],
)
def test_every_authors_tensor_maps_one_to_one(tsv, variant):
    listed = authors_tensors(SPECS / tsv)
    own = {k: tuple(v.shape) for k, v in build_model(variant, 19, aux_heads=True).state_dict().items()}
    assert set(listed) == set(own)
    assert all(listed[k] == own[k] for k in listed)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model_prefix"])
def test_authors_style_checkpoint_loads_strictly(tmp_path, wrap):
    listed = authors_tensors(SPECS / "bevanet_s_cityscapes19_state_dict.tsv")
    g = torch.Generator().manual_seed(0)
    state = {
        k: (torch.randn(shape, generator=g) if not k.endswith("num_batches_tracked") else torch.tensor(7))
        for k, shape in listed.items()
    }
    state = {k: v.abs() if k.endswith("running_var") else v for k, v in state.items()}  # a variance is >= 0
    if wrap == "model_prefix":  # the authors' FullModel: "model." tensors plus loss buffers
        obj = {f"model.{k}": v for k, v in state.items()}
        obj["sem_loss.criterion.weight"] = torch.ones(19)
    elif wrap == "state_dict":
        obj = {"state_dict": state}
    else:
        obj = state
    path = tmp_path / "authors.pth"
    torch.save(obj, path)
    model, info = load_model(path, aux_heads=True)
    assert info.variant == "bevanet_s" and info.num_classes == 19 and info.class_names[0] == "road"
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # the inference model takes the same file, training heads skipped
    infer, _ = load_model(path)
    assert not any(k.startswith("seghead_") for k in infer.state_dict())


def test_safetensors_round_trip_keeps_metadata_and_outputs(tmp_path):
    torch.manual_seed(1)
    model = build_model("bevanet_s", num_classes=11).eval()
    info = ModelInfo.default("bevanet_s", 11, input_size=(480, 360))
    save_weights(model, tmp_path / "m.safetensors", info)
    loaded, info2 = load_model(tmp_path / "m.safetensors")
    assert info2 == info
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(x), model(x))


def test_fp16_weights_load_into_fp32_model(tmp_path):
    model = build_model("bevanet_s", num_classes=11)
    save_weights(model, tmp_path / "h.safetensors", ModelInfo.default("bevanet_s", 11), dtype=torch.float16)
    state, _ = read_checkpoint(tmp_path / "h.safetensors")
    assert state["head.conv2.weight"].dtype == torch.float16
    assert state["layer1.0.bn1.num_batches_tracked"].dtype == torch.int64
    loaded, _ = load_model(tmp_path / "h.safetensors")
    assert loaded.head.conv2.weight.dtype == torch.float32


def _one_line(exc: Exception) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_wrong_class_count_is_named(tmp_path):
    path = tmp_path / "c19.pth"
    torch.save(build_model("bevanet_s", 19).state_dict(), path)
    with pytest.raises(CheckpointError) as e:
        load_model(path, num_classes=11)
    assert "19 classes" in _one_line(e.value) and "11" in str(e.value)
    state, _ = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="19 classes but the model was built for 11"):
        load_state_dict_strict(build_model("bevanet_s", 11), state)


def test_missing_and_mismatched_tensors_are_named(tmp_path):
    state = build_model("bevanet_s", 11).state_dict()
    del state["spp.bn.weight"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "1 missing" in _one_line(e.value) and "spp.bn.weight" in str(e.value)
    state = build_model("bevanet_s", 11).state_dict()
    state["dfm.out.2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="shape mismatch.*dfm.out.2.weight"):
        load_model(path)
    with pytest.raises(CheckpointError, match="holds a bevanet_s model, not bevanet"):
        torch.save(build_model("bevanet_s", 11).state_dict(), path)
        load_model(path, variant="bevanet")


def test_corrupted_and_missing_files(tmp_path):
    good = tmp_path / "good.safetensors"
    save_weights(build_model("bevanet_s", 11), good, ModelInfo.default("bevanet_s", 11))
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(truncated)
    pth = tmp_path / "good.pth"
    torch.save(build_model("bevanet_s", 11).state_dict(), pth)
    bad_pth = tmp_path / "trunc.pth"
    bad_pth.write_bytes(pth.read_bytes()[: len(pth.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="cannot be read as a weights-only"):
        load_model(bad_pth)
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_model(tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_model(garbage)


class _Payload:
    """An object whose unpickling would run code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/bevanet_pwned_by_pickle"), "pwned"))


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = Path("/tmp/bevanet_pwned_by_pickle")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    buf = io.BytesIO()
    torch.save({"state_dict": build_model("bevanet_s", 11).state_dict(), "x": _Payload()}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="pickled code"):
        load_model(path)
    assert not marker.exists()


def test_default_model_missing_gives_clear_error(monkeypatch, tmp_path):
    import bevanet_core.checkpoint as ck

    monkeypatch.setattr(ck, "DEFAULT_WEIGHTS", tmp_path / "nothing.safetensors")
    with pytest.raises(CheckpointError, match="shipped default model is missing"):
        ck.load_model()
