"""Replay bags through the segmentation runtime: accuracy, latency, and an output bag.

Per camera frame this does what the ROS node does, with the same code: the message is decoded by
`serving.decode` and segmented by `serving.StreamSegmenter.segment_frames`; mask, colour mask and
overlay are written with the input header. The mask is then paired with the ground-truth label
of the same header stamp and scored in a confusion matrix.

Label convention: class ids 0..N-1; 255 and any id >= N (e.g. CamVid's raw void 11) are ignored.

This module is the evaluator's interface (the runtime as a processor, one bag, several bags, the
JSON report); the replay of one bag is in replay.py, stamp pairing in pairing.py, and the
options, results and output topics in results.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..evaluation.metrics import ConfusionMatrix, latency_summary
from ..serving.stream import StreamSegmenter
from ..timing import time_call
from .replay import BagEvaluation, pick_image_topic
from .results import (
    COLOR_TOPIC,
    DEFAULT_LABEL_TOPIC,
    MASK_TOPIC,
    OUTPUT_TOPICS,
    OVERLAY_JPEG_QUALITY,
    OVERLAY_TOPIC,
    PAST_OUTPUT_TOPICS,
    BagEvalError,
    BagResult,
    EvalOptions,
    FrameProcessor,
    FrameRecord,
    LabelSource,
)

# the bag evaluator's public names (the options, results and topics live in results.py)
__all__ = [
    "BagEvalError",
    "BagEvaluation",
    "BagResult",
    "COLOR_TOPIC",
    "DEFAULT_LABEL_TOPIC",
    "EvalOptions",
    "FrameProcessor",
    "FrameRecord",
    "LabelSource",
    "MASK_TOPIC",
    "OUTPUT_TOPICS",
    "OVERLAY_JPEG_QUALITY",
    "OVERLAY_TOPIC",
    "PAST_OUTPUT_TOPICS",
    "RuntimeProcessor",
    "build_report",
    "evaluate_bag",
    "evaluate_bags",
    "pick_image_topic",
    "source_rate",
]


class RuntimeProcessor:
    """The node's runtime in-process: each frame goes through the node's own segmentation step
    (`StreamSegmenter.segment_frames`), one frame at a time."""

    def __init__(self, segmenter: Any):
        self.segmenter = segmenter
        self.stream = StreamSegmenter(segmenter, ["bag"])
        self.class_names = list(segmenter.class_names)
        self.num_classes = int(segmenter.info.num_classes)

    def process(self, rgb: np.ndarray, header: Any) -> tuple[np.ndarray | None, float, dict[str, float]]:
        latency, (res,) = time_call(lambda: self.stream.segment_frames([rgb]))
        return (None, latency, {}) if res is None else (res.mask, latency, dict(res.timings))

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        return self.segmenter.colorize(mask)

    def overlay(self, rgb: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
        return self.segmenter.overlay(rgb, mask, alpha)


def evaluate_bag(
    path: Union[str, Path],
    processor: FrameProcessor,
    options: EvalOptions | None = None,
    label_source: LabelSource | None = None,
) -> BagResult:
    """Replay one bag through `processor` (see `BagEvaluation`)."""
    return BagEvaluation(path, processor, options, label_source).run()


# ------------------------------------------------------------------------------------ summaries
def source_rate(first: int | None, last: int | None, frames: int) -> float | None:
    """Camera rate implied by the stamps of `frames` frames."""
    if first is None or last is None or frames < 2 or last <= first:
        return None
    return (frames - 1) / ((last - first) / 1e9)


def build_report(
    results: Sequence[BagResult],
    class_names: Sequence[str],
    confusion: ConfusionMatrix | None = None,
    meta: dict[str, Any] | None = None,
) -> dict:
    """The JSON report over all bags (merged confusion matrix when given, else summed here)."""
    if confusion is None:
        labelled = [r.confusion for r in results if r.confusion is not None]
        if labelled:
            confusion = ConfusionMatrix(labelled[0].num_classes, ignore_index=255)
            for cm in labelled:
                confusion.merge(cm)
    frames = sum(r.frames for r in results)
    labelled_frames = sum(r.labelled for r in results)
    latencies = [v for r in results for v in r.latencies_ms]
    wall = sum(r.wall_s for r in results)
    stages: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.stage_ms.items():
            stages.setdefault(k, []).extend(v)
    scored = confusion is not None and labelled_frames > 0
    metrics = confusion.as_dict(class_names) if scored else None
    report: dict[str, Any] = {
        "miou": metrics["miou"] if metrics else None,
        "per_class_iou": metrics["per_class_iou"] if metrics else None,
        "pixel_accuracy": metrics["pixel_accuracy"] if metrics else None,
        "frames": frames,
        "labelled_frames": labelled_frames,
        "unpaired": sum(r.unpaired_images for r in results),
        "unpaired_labels": sum(r.unpaired_labels for r in results),
        "dropped": sum(r.dropped for r in results),
        "undecodable": sum(r.skipped for r in results),
        "undecodable_reasons": _merged_reasons(results),
        "latency_ms": latency_summary(latencies),
        "stage_ms": {k: float(np.mean(v)) for k, v in stages.items()} or None,
        "fps": frames / wall if wall > 0 and frames else None,
        "errors": [e for r in results for e in r.errors],
        "bags": [_bag_entry(r, class_names) for r in results],
    }
    if meta:
        report.update(meta)
    return report


def _merged_reasons(results: Sequence[BagResult]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for kind, n in r.undecodable.items():
            total[kind] = total.get(kind, 0) + n
    return dict(sorted(total.items()))


def _bag_entry(r: BagResult, class_names: Sequence[str]) -> dict[str, Any]:
    miou = r.confusion.miou() if r.confusion is not None and r.labelled else None
    return {
        "bag": r.bag,
        "image_topic": r.image_topic,
        "label_topic": r.label_topic,
        "frames": r.frames,
        "labelled_frames": r.labelled,
        "miou": miou,
        "unpaired": r.unpaired_images,
        "unpaired_labels": r.unpaired_labels,
        "unpaired_stamps": r.unpaired_stamps,
        "dropped": r.dropped,
        "undecodable": r.skipped,
        "undecodable_reasons": dict(sorted(r.undecodable.items())),
        "latency_ms": latency_summary(r.latencies_ms),
        "fps": r.frames / r.wall_s if r.wall_s > 0 and r.frames else None,
        "camera_rate_hz": source_rate(r.first_stamp, r.last_stamp, r.frames),
        "errors": len(r.errors),
        "out_bag": r.out_bag,
        "uncopied_topics": r.uncopied_topics,
    }


def evaluate_bags(
    bags: Sequence[Union[str, Path]],
    processor: FrameProcessor,
    options: EvalOptions | None = None,
    out_bags: Sequence[Path | None] | None = None,
    label_source: LabelSource | None = None,
    progress: Callable[[BagResult], None] | None = None,
) -> list[BagResult]:
    """Evaluate several bags one after the other (out_bags[i] is bag i's output bag, or None)."""
    import dataclasses

    opt = options or EvalOptions()
    results = []
    for i, bag in enumerate(bags):
        bag_opt = dataclasses.replace(opt, out_bag=out_bags[i] if out_bags is not None else opt.out_bag)
        result = evaluate_bag(bag, processor, bag_opt, label_source)
        results.append(result)
        if progress is not None:
            progress(result)
    return results
