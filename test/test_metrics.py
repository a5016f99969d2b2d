"""The evaluation metric against a confusion matrix computed by hand."""

import math

import numpy as np
import pytest

from bevanet_core.evaluation.metrics import ConfusionMatrix


def test_confusion_matrix_matches_hand_computation():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(pred, label)
    # rows = truth, cols = prediction; the 255 pixel is ignored
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    assert np.array_equal(cm.matrix, expected)
    # IoU_c = TP / (row + col - TP): 1/(2+2-1), 2/(3+3-2), 1/(2+2-1)
    assert np.allclose(cm.iou(), [1 / 3, 2 / 4, 1 / 3])
    assert cm.miou() == pytest.approx(100 * (1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert cm.pixel_accuracy() == pytest.approx(100 * 4 / 7)


def test_absent_class_is_nan_and_excluded_from_the_mean():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    iou = cm.iou()
    assert iou[0] == 1.0 and iou[1] == 1.0 and math.isnan(iou[2])
    assert cm.miou() == pytest.approx(100.0)
    assert cm.as_dict(["a", "b", "c"])["per_class_iou"]["c"] is None


def test_out_of_range_prediction_counts_as_a_miss():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 255, 1]), np.array([0, 0, 1]))
    assert cm.iou()[0] == pytest.approx(1 / 2)  # TP 1, truth 2, predicted 1
    assert cm.pixel_accuracy() == pytest.approx(100 * 2 / 3)


def test_merge_equals_one_pass_and_shapes_are_checked():
    rng = np.random.default_rng(0)
    label, pred = rng.integers(0, 4, (2, 50, 50)), rng.integers(0, 4, (2, 50, 50))
    whole, a, b = ConfusionMatrix(4), ConfusionMatrix(4), ConfusionMatrix(4)
    whole.update(pred, label)
    a.update(pred[0], label[0])
    b.update(pred[1], label[1])
    assert np.array_equal(a.merge(b).matrix, whole.matrix)
    with pytest.raises(ValueError, match="does not match label shape"):
        whole.update(pred[0], label[0, :10])
