"""The comparison networks, driven by the model registry.

For every registered non-BEVANet segmentation network: inference parameters and MACs match
the table of `../shared/specs/baselines.md` within 1%, the training heads back-propagate through
the existing objective, the ONNX export matches PyTorch in ONNX Runtime, and a weights file
saved by `save_weights` selects the network in the runtime by path alone.

MACs are counted at the table's own size with the model on the `meta` device (shapes only, no
arithmetic), which gives exactly the CPU count (checked below) in a fraction of the time.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bevanet_core.checkpoint import ModelInfo, load_model, save_weights
from bevanet_core.deploy import condition_for_parity
from bevanet_core.models import SEGMENTATION_MODELS, SegmentationOutputs, build_model
from bevanet_core.models.complexity import count_macs, count_parameters
from bevanet_core.models.published import BASELINE_COUNTS
from bevanet_core.options import logits_align_corners

SPEC = BASELINE_COUNTS  # name -> (params in millions, GMACs or None, (H, W), classes)
# networks trained with their inference graph only (Light-Ham: plain CE on the main output)
NO_TRAINING_HEADS = {n for n in SPEC if n.startswith("van_")}
BEVANET_FAMILY = ("bevanet", "bevanet_s")
BASELINES = sorted(n for n in SEGMENTATION_MODELS if n not in BEVANET_FAMILY)
TOLERANCE = 0.01


pytestmark = pytest.mark.usefixtures("one_thread")  # the shared fixture in conftest.py


def _seeded(name: str, num_classes: int = 11, aux_heads: bool = False) -> nn.Module:
    """A seeded eval model whose logits are O(1..10) and vary over the image."""
    torch.manual_seed(0)
    return condition_for_parity(build_model(name, num_classes=num_classes, aux_heads=aux_heads).eval())


def _structured_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Ramps plus noise: spatial structure, so that even deep random networks vary their output."""
    noise = np.random.default_rng(seed).integers(0, 64, (h, w, 3))
    ramp_x = np.linspace(0, 191, w)[None, :, None]
    ramp_y = np.linspace(191, 0, h)[:, None, None]
    return (
        (
            noise
            + np.concatenate(
                [np.broadcast_to(ramp_x, (h, w, 1)), np.broadcast_to(ramp_y, (h, w, 1)), np.full((h, w, 1), 96.0)], -1
            )
        )
        .clip(0, 255)
        .astype(np.uint8)
    )


def _meta_macs(model: nn.Module, size) -> int:
    meta = copy.deepcopy(model).to("meta")
    with torch.device("meta"):
        return count_macs(meta, size)


def test_every_baseline_has_a_table_entry():
    assert BASELINES, "no baseline network is registered"
    assert set(BASELINES) <= set(SPEC), f"registered without a spec row: {set(BASELINES) - set(SPEC)}"


def test_meta_device_count_equals_cpu_count():
    model = build_model(BASELINES[0], num_classes=19).eval()
    assert _meta_macs(model, (64, 128)) == count_macs(model, (64, 128))


@pytest.mark.parametrize("name", BASELINES)
def test_params_and_macs_match_the_table(name):
    params_m, gmacs, size, classes = SPEC[name]
    model = build_model(name, num_classes=classes).eval()
    params = count_parameters(model) / 1e6
    assert abs(params - params_m) <= TOLERANCE * params_m, f"{name}: {params:.3f}M params vs {params_m}M"
    if gmacs is not None:
        macs = _meta_macs(model, size) / 1e9
        assert abs(macs - gmacs) <= TOLERANCE * gmacs, f"{name}: {macs:.2f} GMACs vs {gmacs} at {size}"
    # the training heads add parameters but never change the inference graph
    with_heads = count_parameters(build_model(name, num_classes=classes, aux_heads=True))
    if name in NO_TRAINING_HEADS:
        assert with_heads == count_parameters(model)
    else:
        assert with_heads > count_parameters(model)


@pytest.mark.parametrize("name", BASELINES)
def test_inference_output_is_logits_at_the_output_stride(name):
    model = _seeded(name, num_classes=5)
    stride = model.output_stride
    assert stride == (4 if name == "bssnet_b" else 8)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, 64 // stride, 96 // stride)
    assert torch.isfinite(out).all()


def _training_loss(out, target: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """The engine's objective: each family's own loss, chosen from its training outputs."""
    from bevanet_core.training.losses import BEVANetCriterion
    from bevanet_core.training.objective import TrainingObjective

    return TrainingObjective(BEVANetCriterion(ohem_min_kept=1000))(out, target, edge)["loss"]


@pytest.mark.parametrize("name", BASELINES)
def test_backward_through_the_training_heads(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, aux_heads=True).train()
    images = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 4, (2, 64, 64))
    target[:, :4] = 255
    edge = torch.zeros(2, 64, 64)
    edge[:, :, 30:33] = 1
    out = model(images)
    side = 64 // model.output_stride
    assert out.main.shape == (2, 4, side, side)
    if isinstance(out, SegmentationOutputs):  # PIDNet trains with the project's objective unchanged
        assert out.aux.shape == (2, 4, 8, 8) and out.boundary.shape == (2, 1, 8, 8)
    loss = _training_loss(out, target, edge)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"{name}: parameters without a finite gradient: {no_grad[:5]}"
    # dropping the heads leaves the inference network, with its contract
    model.without_aux_heads().eval()
    with torch.no_grad():
        assert model(images[:1]).shape == (1, 4, side, side)


@pytest.mark.parametrize("name", BASELINES)
def test_onnx_parity_on_cpu(name, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    from bevanet_core.export.onnx import export_onnx, onnx_parity

    model = _seeded(name, aux_heads=True)  # export removes the training heads itself
    info = ModelInfo.default(name, 11, input_size=(96, 64))
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, info, path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    got, expected = onnx_parity(model, path, x)
    stride = model.output_stride
    assert got.shape == expected.shape == (1, 11, 64 // stride, 96 // stride)
    assert np.abs(expected).max() > 1e-2, "degenerate logits make the parity check meaningless"
    assert np.abs(got - expected).max() < 1e-3


@pytest.mark.parametrize("name", BASELINES)
def test_weights_file_selects_the_network_in_the_runtime(name, tmp_path):
    from bevanet_core.runtime import Segmenter, SegmenterConfig

    model = _seeded(name)
    info = ModelInfo.default(name, 11, input_size=(64, 48))
    path = tmp_path / f"{name}.safetensors"
    save_weights(model, path, info)

    loaded, loaded_info = load_model(path)
    assert type(loaded) is type(model) and loaded_info.variant == name
    own = model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())

    seg = Segmenter(SegmenterConfig(weights=str(path), backend="torch"))
    assert seg.info.variant == name
    assert seg.backend.fold_report.num_folded > 0  # the deploy transform traced the network
    frame = _structured_frame(48, 64)
    res = seg.segment(frame, encoding="rgb8")
    assert res.mask.shape == (48, 64) and res.mask.dtype == np.uint8
    assert len(np.unique(res.mask)) > 1
    # the runtime's (BN-folded) prediction is the model's own: frame size == input size here
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(info.mean)[:, None, None]) / torch.tensor(info.std)[:, None, None]
    with torch.no_grad():
        logits = F.interpolate(
            model(x), size=(48, 64), mode="bilinear", align_corners=logits_align_corners(name)
        )  # as its objective
    expected = logits.argmax(1)[0].numpy()
    assert (res.mask == expected).mean() > 0.99


def test_pidnet_trains_through_the_engine_and_loads_for_inference(shared_data, tmp_path):
    """The project's training loop (its own PIDNet-style objective) runs PIDNet-S unchanged, and
    the saved best weights (training heads included) load by path as an inference model."""
    import shutil

    from bevanet_core.training.config import load_config
    from bevanet_core.training.engine import train

    src, data = shared_data / "camvid", tmp_path / "data"
    lines = (src / "train.lst").read_text().splitlines()[:2]
    for line in lines:
        for rel in line.split():
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, data / rel)
    (data / "train.lst").write_text("\n".join(lines) + "\n")
    (data / "val.lst").write_text(lines[0] + "\n")
    overrides = [
        "model.variant=pidnet_s",
        f"data.root={data}",
        "data.train_list=train.lst",
        "data.val_list=val.lst",
        "data.base_size=128",
        "data.crop_size=[128,96]",
        "data.workers=0",
        "optim.batch_size=2",
        "optim.iterations=2",
        f"run.out_dir={tmp_path / 'run'}",
        "run.checkpoint_every=0",
        "run.val_every=0",
        "run.threads=1",
    ]
    result = train(load_config(None, overrides))
    assert result["iteration"] == 2
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "best.safetensors"), framework="pt") as f:
        assert any(k.startswith("seghead_p.") for k in f.keys())  # saved with its training heads
    model, info = load_model(tmp_path / "run" / "best.safetensors")
    assert info.variant == "pidnet_s" and info.num_classes == 11
    assert type(model).__name__ == "PIDNet" and not model.aux_heads
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 96, 128)).shape == (1, 11, 12, 16)


def test_authors_style_pidnet_checkpoint_loads_when_the_variant_is_named(tmp_path):
    """A foreign `.pth` (no metadata; the authors' FullModel layout: `model.` prefix plus loss
    buffers) of a named baseline loads one to one; unnamed it is still refused clearly."""
    from bevanet_core.checkpoint import CheckpointError

    state = _seeded("pidnet_s", num_classes=19, aux_heads=True).state_dict()
    obj = {f"model.{k}": v for k, v in state.items()}
    obj["sem_loss.criterion.weight"] = torch.ones(19)
    path = tmp_path / "PIDNet_S_Cityscapes_val.pt"
    torch.save(obj, path)
    model, info = load_model(path, variant="pidnet_s", aux_heads=True)
    assert info.variant == "pidnet_s" and info.num_classes == 19 and info.class_names[0] == "road"
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    infer, _ = load_model(path, variant="pidnet_s")  # the training heads are skipped
    assert not any(k.startswith("seghead_") for k in infer.state_dict())
    with pytest.raises(CheckpointError, match="not a BEVANet segmentation checkpoint"):
        load_model(path)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(path, variant="pidnet_m")  # wrong width: the strict load names the tensors


@pytest.mark.parametrize(
    "name", [n for n in ("pidnet_s", "bisenetv2", "stdc1", "bssnet_b", "van_tiny_lightham") if n in BASELINES]
)
def test_onnxruntime_segmenter_agrees_with_the_torch_one(name, tmp_path):
    """One network per family through the runtime's ONNX Runtime backend (export into the
    cache from the weights file), compared with the PyTorch backend on the same frame."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from bevanet_core.runtime import Segmenter, SegmenterConfig

    path = tmp_path / f"{name}.safetensors"
    save_weights(_seeded(name), path, ModelInfo.default(name, 11, input_size=(96, 64)))
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    masks = {}
    for backend in ("torch", "onnxruntime"):
        cfg = SegmenterConfig(weights=str(path), backend=backend, num_threads=1, cache_dir=str(tmp_path / "cache"))
        seg = Segmenter(cfg)
        assert seg.info.variant == name and seg.input_size == (96, 64)
        masks[backend] = seg.segment(frame, encoding="bgr8").mask
    assert masks["torch"].shape == (120, 160) and len(np.unique(masks["torch"])) > 1
    assert (masks["torch"] == masks["onnxruntime"]).mean() > 0.99


def test_authors_style_stdc_checkpoint_loads(tmp_path):
    """The authors' STDC-Seg files hold stage aliases of the backbone (`cp.backbone.x2..x32`,
    the same tensors as `features`), the ImageNet classifier and unused detail heads: the aliases
    are checked against the features and dropped with the rest; anything else still fails."""
    from bevanet_core.checkpoint import CheckpointError

    model = _seeded("stdc1", num_classes=19, aux_heads=True)
    state = dict(model.state_dict())
    ends = model.cp.backbone.stage_ends  # (2, 4, 6, 8) for STDC1
    stages = {"x2": (0, 1), "x4": (1, 2), "x8": (2, ends[1]), "x16": (ends[1], ends[2]), "x32": (ends[2], ends[3])}
    for alias, (lo, hi) in stages.items():
        for j, i in enumerate(range(lo, hi)):
            for k, v in list(state.items()):
                if k.startswith(f"cp.backbone.features.{i}."):
                    state[k.replace(f"features.{i}.", f"{alias}.{j}.", 1)] = v.clone()
    g = torch.Generator().manual_seed(0)
    for name, shape in (
        ("cp.backbone.conv_last.conv.weight", (1024, 1024, 1, 1)),
        ("cp.backbone.fc.weight", (1024, 1024)),
        ("cp.backbone.bn.running_mean", (1024,)),
        ("cp.backbone.linear.weight", (1000, 1024)),
        ("conv_out_sp2.conv_out.weight", (1, 64, 1, 1)),
        ("conv_out_sp16.conv_out.weight", (1, 64, 1, 1)),
    ):
        state[name] = torch.randn(shape, generator=g)
    path = tmp_path / "STDC1-Seg.pth"
    torch.save(state, path)
    loaded, info = load_model(path, variant="stdc1", aux_heads=True)
    assert info.num_classes == 19
    own = model.state_dict()
    assert set(loaded.state_dict()) == set(own)
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())

    bad = dict(state)
    bad["cp.backbone.x8.1.conv_list.0.conv.weight"] = bad["cp.backbone.x8.1.conv_list.0.conv.weight"] + 1
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="stage alias cp.backbone.x8.1.conv_list.0.conv.weight"):
        load_model(path, variant="stdc1")
    stray = dict(state)
    stray["cp.mystery.weight"] = torch.zeros(3)
    torch.save(stray, path)
    with pytest.raises(CheckpointError, match="1 unexpected"):
        load_model(path, variant="stdc1", aux_heads=True)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_labels_upsampling_follows_the_output_stride(backend, tmp_path):
    """BSSNet-B's logits are at 1/4: with `upsample=labels` every frame pixel takes the label of
    the nearest 1/4 cell (frame size == input size here), on both backends. BSSNet trains with
    align_corners=True, so the cells' centres run from the first pixel's to the last's."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from bevanet_core.runtime import Segmenter, SegmenterConfig

    model = _seeded("bssnet_b")
    info = ModelInfo.default("bssnet_b", 11, input_size=(96, 64))
    path = tmp_path / "bssnet_b.safetensors"
    save_weights(model, path, info)
    frame = np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    cfg = SegmenterConfig(
        weights=str(path), backend=backend, upsample="labels", num_threads=1, cache_dir=str(tmp_path / "cache")
    )
    mask = Segmenter(cfg).segment(frame, encoding="rgb8").mask
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(info.mean)[:, None, None]) / torch.tensor(info.std)[:, None, None]
    with torch.no_grad():
        low = model(x).argmax(1)[0].numpy()
    assert low.shape == (16, 24)
    assert logits_align_corners("bssnet_b")
    rows = np.floor(np.arange(64) * 15 / 63 + 0.5).astype(int)  # pixel y -> nearest cell centre
    cols = np.floor(np.arange(96) * 23 / 95 + 0.5).astype(int)
    expected = low[rows[:, None], cols[None, :]]
    assert (mask == expected).mean() > 0.99


@pytest.mark.parametrize("name", BASELINES)
def test_training_checkpoint_loads_as_an_inference_model(name, tmp_path):
    """The engine saves best.safetensors with the training heads: loading it by path gives the
    inference network (heads skipped, declared in the model's TRAINING_HEADS), and strictly."""
    torch.manual_seed(0)
    trained = build_model(name, num_classes=11, aux_heads=True)
    path = tmp_path / "best.safetensors"
    save_weights(trained, path, ModelInfo.default(name, 11))
    model, info = load_model(path)
    assert info.variant == name and not getattr(model, "aux_heads", False)
    full = trained.state_dict()
    own = model.state_dict()
    assert set(own) <= set(full)
    assert all(torch.equal(v, full[k]) for k, v in own.items())
    heads = tuple(f"{n}." for n in getattr(model, "TRAINING_HEADS", ()))
    assert {k for k in full if k not in own} == {k for k in full if heads and k.startswith(heads)}
