"""studies/logit_offset_sweep.py: offset 0 is the model as bevanet-eval's training twin counts it."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "data" / "camvid"

pytestmark = pytest.mark.skipif(not (CAMVID / "val.lst").is_file(), reason="needs ../shared/data/camvid")


def _module():
    spec = importlib.util.spec_from_file_location("logit_offset_sweep", REPO / "studies" / "logit_offset_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offset_zero_is_the_validation_and_extreme_offsets_bound_the_class():
    from bevanet_core.checkpoint import load_model
    from bevanet_core.data.datasets import build_dataset
    from bevanet_core.data.transforms import EvalTransform
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training.validation import evaluate

    sweep = _module()
    pole = 2
    margin, other, label, info = sweep.margins(None, CAMVID, CAMVID / "val.lst", pole, limit=2)
    rows = {r["offset"]: r for r in sweep.sweep(margin, other, label, pole, info.num_classes, [-1e4, 0.0, 1e4])}

    model, _ = load_model(None)
    val = build_dataset("camvid", CAMVID, CAMVID / "val.lst", "val", EvalTransform())
    cm = evaluate(
        model, val, torch.device("cpu"), info.num_classes, limit=2, align_corners=logits_align_corners(info.variant)
    )
    expected = [None if math.isnan(v) else 100 * v for v in cm.iou()]
    for got, want in zip(rows[0.0]["per_class_iou"], expected, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, abs=0.02)  # argmax ties can fall either way
    assert rows[0.0]["miou"] == pytest.approx(cm.miou(), abs=0.02)
    assert rows[-1e4]["recall"] == 0.0 and rows[-1e4]["iou"] == 0.0  # never predicted
    assert rows[1e4]["recall"] == 100.0 and rows[1e4]["iou"] < rows[0.0]["iou"]  # predicted everywhere
