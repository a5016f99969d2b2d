"""BSSNet-T / BSSNet-B (bevanet_core/models/bssnet.py) and their objective (BSSNetCriterion).

Counts against `../shared/specs/baselines.md` (inference params and MACs at 1024x2048 within
1%, MACs on the meta device as in test_baselines.py), output strides (T 1/8, B 1/4) on sizes
whose 1/64 map is odd, backward through every training head with the criterion, ONNX parity in
ONNX Runtime, and the criterion's terms on hand-made outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bevanet_core.deploy import condition_for_parity
from bevanet_core.models.bssnet import BSSNet, BSSNetOutputs, bssnet_b, bssnet_t
from bevanet_core.models.complexity import count_parameters
from bevanet_core.training.bssnet_loss import BSSNetCriterion, ohem_sampled_cross_entropy

# factory, output stride (parameter and MAC counts: test_baselines.py, from models/published.py)
VARIANTS = {
    "bssnet_t": (bssnet_t, 8),
    "bssnet_b": (bssnet_b, 4),
}
NAMES = sorted(VARIANTS)

pytestmark = pytest.mark.usefixtures("one_thread")  # the shared fixture in conftest.py


def _seeded(name: str, num_classes: int = 11, aux_heads: bool = False) -> BSSNet:
    """Eval model whose logits are O(1..10) and vary over the image."""
    torch.manual_seed(0)
    model = VARIANTS[name][0](num_classes=num_classes, aux_heads=aux_heads).eval()
    return condition_for_parity(model)


@pytest.mark.parametrize("name", NAMES)
def test_training_heads_add_parameters_and_drop_off(name):
    factory = VARIANTS[name][0]
    model = factory(num_classes=19).eval()
    # the training heads add parameters; dropping them gives the inference network back
    train_model = factory(num_classes=19, aux_heads=True)
    assert count_parameters(train_model) > count_parameters(model)
    assert count_parameters(train_model.without_aux_heads()) == count_parameters(model)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(64, 96), (96, 120), (72, 136)])
def test_inference_logits_at_the_output_stride(name, size):
    """Any multiple of 8 works, including sizes whose 1/32 and 1/64 maps are odd."""
    stride = VARIANTS[name][1]
    model = _seeded(name, num_classes=5)
    assert model.output_stride == stride
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 5, size[0] // stride, size[1] // stride)
    assert torch.isfinite(out).all() and out.std() > 0


@pytest.mark.parametrize("name", NAMES)
def test_backward_through_every_head_with_the_criterion(name):
    torch.manual_seed(0)
    model = VARIANTS[name][0](num_classes=4, aux_heads=True).train()
    stride = VARIANTS[name][1]
    images = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 4, (2, 64, 64))
    target[:, :4] = 255
    edge = torch.zeros(2, 64, 64)
    edge[:, :, 30:33] = 1
    out = model(images)
    assert isinstance(out, BSSNetOutputs)
    assert out.main.shape == (2, 4, 64 // stride, 64 // stride)
    assert out.border.shape == (2, 1, 8, 8) and out.reconstruction.shape == (2, 3, 8, 8)
    assert out.aux3.shape == (2, 4, 4, 4) and out.aux4.shape == (2, 4, 2, 2)
    assert out.image is images
    losses = BSSNetCriterion(ohem_min_kept=1000, aux_min_kept=100)(out, target, edge)
    terms = {"main", "border", "boundary_ce", "reconstruction", "aux3", "aux4"}
    assert set(losses) == {"loss", *terms}
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert all(not v.requires_grad for k, v in losses.items() if k != "loss")
    losses["loss"].backward()
    grads = dict(model.named_parameters())
    bad = [n for n, p in grads.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: parameters without a finite gradient: {bad[:5]}"
    # every head and branch is connected to the loss (a few BN biases whose only consumers
    # are the PAPPM's train-mode BNs get an exactly cancelled, ~0 gradient: not checked)
    heads = ("fuse_b_d_head.", "b_head.", "d_head.", "auxiliary_head.0.", "auxiliary_head.1.")
    branches = ("b_branch_layers.", "d_branch_layers.", "uafm_ib.", "uafm_id.", "fuse_bdi.")
    for prefix in (*heads, *branches, "spp.", "stem.0."):
        dead = [
            n for n, p in grads.items() if n.startswith(prefix) and n.endswith("weight") and not p.grad.abs().sum() > 0
        ]
        assert not dead, f"{name}: zero gradient on {dead[:5]}"
    model.without_aux_heads().eval()
    with torch.no_grad():
        assert model(images[:1]).shape == (1, 4, 64 // stride, 64 // stride)


@pytest.mark.parametrize("name", NAMES)
def test_onnx_parity_on_cpu(name, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    from bevanet_core.checkpoint import ModelInfo
    from bevanet_core.export.onnx import export_onnx, onnx_parity

    stride = VARIANTS[name][1]
    model = _seeded(name, aux_heads=True)  # the export drops the training heads itself
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, ModelInfo.default(name, 11, input_size=(96, 64)), path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    got, expected = onnx_parity(model, path, x)
    assert got.shape == expected.shape == (1, 11, 64 // stride, 96 // stride)
    assert 1.0 < np.abs(expected).max() < 100, "logits outside O(1..10) make 1e-3 meaningless"
    assert np.abs(got - expected).max() < 1e-3
    # the runtime's cache exports with a dynamic batch: the spatial output size must stay
    # static for ONNX Runtime (it sizes its output buffers from it)
    dyn = tmp_path / f"{name}-dyn.onnx"
    export_onnx(model, ModelInfo.default(name, 11, input_size=(96, 64)), dyn, dynamic_batch=True)
    session = ort.InferenceSession(str(dyn), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape[1:] == [11, 64 // stride, 96 // stride]
    got2, _ = onnx_parity(model, dyn, torch.cat([x, x]))
    assert np.abs(got2 - np.concatenate([expected] * 2)).max() < 1e-3


# --------------------------------------------------------------------------- criterion terms


def _outputs(num_classes: int = 3, size: int = 16, seed: int = 0) -> BSSNetOutputs:
    g = torch.Generator().manual_seed(seed)
    s8 = size // 8
    image = torch.randn(2, 3, size, size, generator=g)
    return BSSNetOutputs(
        main=torch.randn(2, num_classes, s8, s8, generator=g),
        border=torch.randn(2, 1, s8, s8, generator=g),
        reconstruction=torch.randn(2, 3, s8, s8, generator=g),
        aux3=torch.randn(2, num_classes, s8 // 2, s8 // 2, generator=g),
        aux4=torch.randn(2, num_classes, 1, 1, generator=g),
        image=image,
    )


def _labels(num_classes: int = 3, size: int = 16):
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, num_classes, (2, size, size), generator=g)
    edge = torch.zeros(2, size, size)
    edge[:, size // 2] = 1
    return target, edge


def test_reconstruction_term_is_zero_for_a_perfect_reconstruction_and_l1_otherwise():
    target, edge = _labels()
    out = _outputs()
    crit = BSSNetCriterion(ohem_min_kept=10)
    # a constant image per channel is reconstructed exactly from any resolution
    flat = out.image.mean(dim=(2, 3), keepdim=True).expand_as(out.image).contiguous()
    perfect = out._replace(image=flat, reconstruction=flat[:, :, ::8, ::8].contiguous())
    assert crit(perfect, target, edge)["reconstruction"].item() == pytest.approx(0.0, abs=1e-6)
    shifted = perfect._replace(reconstruction=perfect.reconstruction + 0.5)
    assert crit(shifted, target, edge)["reconstruction"].item() == pytest.approx(0.5, abs=1e-6)


def test_boundary_ce_is_zero_when_no_border_logit_passes_the_threshold():
    target, edge = _labels()
    out = _outputs()
    crit = BSSNetCriterion(ohem_min_kept=10)
    low = out._replace(border=torch.full_like(out.border, -3.0))  # sigmoid 0.047 < 0.8
    assert crit(low, target, edge)["boundary_ce"].item() == 0.0
    high = out._replace(border=torch.full_like(out.border, 3.0))  # sigmoid 0.95: every pixel
    terms = crit(high, target, edge)
    assert terms["boundary_ce"].item() > 0
    assert terms["boundary_ce"].item() == pytest.approx(terms["main"].item())


def test_total_is_the_weighted_sum_of_the_terms():
    target, edge = _labels()
    terms = BSSNetCriterion(ohem_min_kept=10)(_outputs(), target, edge)
    expected = (
        terms["main"]
        + 20 * terms["border"]
        + terms["boundary_ce"]
        + terms["reconstruction"]
        + terms["aux3"]
        + terms["aux4"]
    )
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_border_term_is_class_balanced_bce():
    target, edge = _labels()
    out = _outputs()
    crit = BSSNetCriterion(ohem_min_kept=10)
    confident = torch.full((2, 1, 16, 16), -20.0)
    confident[:, :, 8] = 20.0  # exactly the edge row at full resolution
    # border logits given at full size are not resized (align_corners=True keeps them)
    terms = crit(out._replace(border=confident), target, edge)
    assert terms["border"].item() == pytest.approx(0.0, abs=1e-6)
    assert crit(out._replace(border=-confident), target, edge)["border"].item() > 1.0


def test_aux_ce_divides_the_kept_pixels_by_all_pixels():
    """mmseg's OHEM pixel sampler: a confidently right pixel (p > thresh) is dropped but still
    counts in the denominator; with thresh 1 every pixel is kept: plain mean CE."""
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0, 0] = 10.0  # pixel 0 is class 0 with p ~ 1
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")[0, 0]
    sampled = ohem_sampled_cross_entropy(logits, target, thresh=0.7, min_kept=1)
    assert sampled.item() == pytest.approx(ce[1:].sum().item() / 4)
    everything = ohem_sampled_cross_entropy(logits, target, thresh=1.0, min_kept=1)
    assert everything.item() == pytest.approx(ce.mean().item())
    target[0, 0, 1:] = 255
    assert ohem_sampled_cross_entropy(logits, target, min_kept=1).item() == 0.0


def test_criterion_refuses_other_outputs_and_mismatched_edges():
    target, edge = _labels()
    crit = BSSNetCriterion()
    with pytest.raises(TypeError, match="BSSNetOutputs"):
        crit((torch.zeros(2, 3, 2, 2),) * 3, target, edge)
    with pytest.raises(ValueError, match="edge map size"):
        crit(_outputs(), target, edge[:, :8])
