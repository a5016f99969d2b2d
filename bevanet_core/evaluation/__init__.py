"""Segmentation metrics and dataset evaluation."""

from .metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
