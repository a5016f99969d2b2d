"""The networks are the published ones: parameter counts, MACs, topology, forward contract."""

import pytest
import torch

from bevanet_core.models import SegmentationOutputs, build_model, list_models
from bevanet_core.models.complexity import count_macs, count_parameters
from bevanet_core.models.layers import dilated_depthwise_convs

# the authors' code, built and counted (../shared/specs/bevanet.md)
SPEC_COUNTS = [
    ("bevanet", 19, 58.824e6, 58.599e6),
    ("bevanet_s", 19, 15.186e6, 15.091e6),
    ("bevanet_s", 11, 15.184e6, 15.090e6),
    ("bevanet", 150, 58.858e6, 58.616e6),
]


@pytest.mark.parametrize("name,classes,train_count,infer_count", SPEC_COUNTS)
def test_parameter_counts_match_the_authors(name, classes, train_count, infer_count):
    train = count_parameters(build_model(name, num_classes=classes, aux_heads=True))
    infer = count_parameters(build_model(name, num_classes=classes))
    assert abs(train - train_count) / train_count < 1e-3, train
    assert abs(infer - infer_count) / infer_count < 1e-3, infer


@pytest.mark.parametrize("name,expected", [("bevanet_cls", 57.391e6), ("bevanet_s_cls", 16.279e6)])
def test_classifier_parameter_counts(name, expected):
    n = count_parameters(build_model(name, num_classes=1000))
    assert abs(n - expected) / expected < 1e-3, n


def test_eva_block_closed_form():
    from bevanet_core.models.bevanet import EVABlock

    c = 512
    h = max(c // 16, 32)
    expected = 11 * c * c + 143 * c + 4 * h * c + 13 * h + 297
    assert expected == 3_023_049
    assert count_parameters(EVABlock(c, 35)) == expected


def test_macs_bevanet_s_720x960_match_paper():
    macs = count_macs(build_model("bevanet_s", num_classes=19), (720, 960))
    assert abs(macs / 1e9 - 19.9) / 19.9 < 0.02, macs


def test_forward_contract_is_fixed_by_construction():
    x = torch.randn(2, 3, 64, 96)
    infer = build_model("bevanet_s", num_classes=11)
    for mode in (infer.train(), infer.eval()):
        out = mode(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 11, 8, 12)
    trainm = build_model("bevanet_s", num_classes=11, aux_heads=True)
    for mode in (trainm.train(), trainm.eval()):
        out = mode(x)
        assert isinstance(out, SegmentationOutputs)
        assert out.aux.shape == (2, 11, 8, 12) and out.main.shape == (2, 11, 8, 12)
        assert out.boundary.shape == (2, 1, 8, 12)


def test_without_aux_heads_keeps_main_logits():
    torch.manual_seed(0)
    m = build_model("bevanet_s", num_classes=5, aux_heads=True).eval()
    x = torch.randn(1, 3, 64, 64)
    main = m(x).main
    stripped = m.without_aux_heads()
    assert not any(k.startswith("seghead_") for k in stripped.state_dict())
    assert torch.equal(stripped(x), main)


@pytest.mark.parametrize("name", list_models())
def test_backward_on_tiny_input(name):
    """Also: dilated depthwise convs get NCHW inputs. The CPU's bf16 weight gradient of such a
    conv is wrong for channels-last inputs (torch 2.13 oneDNN; layers.channel_layer_norm,
    test_van.py), which permuted LayerNorms would otherwise hand them."""
    m = build_model(name, num_classes=3, aux_heads=True).train()
    layouts = []
    for n, conv in dilated_depthwise_convs(m):
        conv.register_forward_hook(lambda mod, args, out, n=n: layouts.append((n, args[0].is_contiguous())))
    out = m(torch.randn(2, 3, 64, 64))
    assert [n for n, contiguous in layouts if not contiguous] == []
    side = 64 // m.output_stride  # 1/8, BSSNet-B 1/4
    assert out.main.shape[-2:] == (side, side)  # every family's training outputs name the main logits
    sum(o.float().mean() for o in out if o.requires_grad).backward()  # BSSNet also returns its input
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_classifier_forward():
    m = build_model("bevanet_s_cls", num_classes=10).eval()
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_model_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'segformer'"):
        build_model("segformer")
    with pytest.raises(ValueError, match="no auxiliary heads"):
        build_model("bevanet_cls", aux_heads=True)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("bevanet_s", num_classes=0)
