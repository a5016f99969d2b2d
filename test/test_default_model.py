"""The shipped default model: present, self-describing, and a trained network (not random)."""

import numpy as np
import torch

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model, read_checkpoint
from bevanet_core.data.classes import CAMVID_CLASSES, CAMVID_PALETTE
from bevanet_core.data.datasets import CamVid
from bevanet_core.evaluation.metrics import ConfusionMatrix
from bevanet_core.runtime import Segmenter, SegmenterConfig


def test_shipped_weights_are_fp16_with_metadata():
    assert DEFAULT_WEIGHTS.is_file(), f"the package must ship {DEFAULT_WEIGHTS}"
    state, info = read_checkpoint(DEFAULT_WEIGHTS)
    assert info is not None and info.variant == "bevanet_s" and info.num_classes == 11
    assert info.class_names == CAMVID_CLASSES and info.palette == CAMVID_PALETTE
    assert tuple(info.input_size) == (480, 360)
    assert state["head.conv2.weight"].dtype == torch.float16
    assert not any(k.startswith("seghead_") for k in state)  # inference model only
    model, _ = load_model()
    assert model.head.conv2.weight.dtype == torch.float32 and not model.training


def test_shipped_model_segments_camvid_far_above_chance(shared_data):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seg = Segmenter(SegmenterConfig())  # no weights given: the shipped model
        ds = CamVid(shared_data / "camvid", shared_data / "camvid" / "val.lst")
        cm = ConfusionMatrix(11)
        for i in range(0, len(ds), 10):  # 11 frames across the val sequences
            image, label = ds[i]
            cm.update(seg.segment(image, "rgb8").mask, label)
    finally:
        torch.set_num_threads(threads)
    # a random network scores about 2-5 mIoU here; the README gives the full val figure
    assert cm.miou() > 30.0, cm.miou()
    assert cm.pixel_accuracy() > 70.0
    assert np.nanmin(cm.iou()[[0, 1, 3]]) > 0.5  # sky, building and road are easy classes
