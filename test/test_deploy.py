"""BatchNorm folding: outputs unchanged (relative error < 1e-5 in fp32), all conv -> BN folded."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bevanet_core.deploy import count_conv_bn_pairs, find_conv_bn_pairs, fold_batchnorm, randomise_batchnorm
from bevanet_core.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("variant", ["bevanet_s", "bevanet"])
def test_fold_batchnorm_keeps_outputs(variant):
    torch.manual_seed(0)
    model = build_model(variant, num_classes=11).eval()
    randomise_batchnorm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, report = fold_batchnorm(model, return_report=True)

    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, out = model(x), folded(x)
    rel = ((ref - out).abs().max() / ref.abs().max()).item()
    assert rel < 1e-5, f"{variant}: relative error {rel:.2e}"

    assert count_conv_bn_pairs(folded) == 0
    assert report.num_folded > 60  # every ResNet/PagFM/CKS conv-BN pair (66 for S, 68 for the full model)
    assert report.num_folded + report.num_remaining == _bn_count(model)
    assert _bn_count(folded) == report.num_remaining
    # the remaining ones are pre-activation / residual-stream BNs that no conv precedes directly
    assert all(not why.startswith("input comes from conv") for why in report.remaining.values())
    assert "layer4_semantic_1.norm1" in report.remaining and "dfm.out.0" in report.remaining
    # the caller's model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_conv_output_used_twice_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y + self.bn2(self.conv2(y))

    model = Shared().eval()
    randomise_batchnorm(model)
    pairs, remaining = find_conv_bn_pairs(model)
    assert pairs == [("conv2", "bn2")]
    assert "also used elsewhere" in remaining["bn"]
    folded = fold_batchnorm(model)
    assert isinstance(folded.bn2, nn.Identity) and folded.conv2.bias is not None
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)


def test_fold_batchnorm_untraceable_model_names_the_problem():
    class Dynamic(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow

    with pytest.raises(ValueError, match="cannot trace Dynamic"):
        fold_batchnorm(Dynamic())
