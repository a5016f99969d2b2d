"""What the bag evaluator is asked and what it answers: the output topics, the options, the
per-frame record handed to a callback, the per-bag result, the error for options that do not fit
a bag, and the processor protocol (the in-process runtime, or the real node over DDS)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..evaluation.metrics import ConfusionMatrix

MASK_TOPIC = "/segmentation/mask"
COLOR_TOPIC = "/segmentation/color_mask"
# the overlay is a picture for people: JPEG on image_transport's compressed topic; the label
# and colour masks stay lossless (raw Image, in zstd-compressed MCAP chunks)
OVERLAY_TOPIC = "/segmentation/overlay/compressed"
OVERLAY_JPEG_QUALITY = 90
OUTPUT_TOPICS = (MASK_TOPIC, COLOR_TOPIC, OVERLAY_TOPIC)
# outputs of earlier versions (raw rgb8 overlay): never a camera, never copied into a new output
PAST_OUTPUT_TOPICS = OUTPUT_TOPICS + ("/segmentation/overlay",)
DEFAULT_LABEL_TOPIC = "/camera/labels"


class BagEvalError(ValueError):
    """Options that do not fit a bag (no image topic, ambiguous topic, wrong type...)."""


class FrameProcessor(Protocol):
    """What turns a camera frame into a mask: the in-process runtime, or the real node via DDS."""

    num_classes: int
    class_names: list[str]

    def process(self, rgb: np.ndarray, header: Any) -> tuple[np.ndarray | None, float, dict[str, float]]:
        """(HxW uint8 mask or None for a dropped frame, latency ms, stage timings ms)."""

    def colorize(self, mask: np.ndarray) -> np.ndarray: ...

    def overlay(self, rgb: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray: ...


@dataclass
class EvalOptions:
    """How bags are replayed and scored."""

    image_topic: str | None = None  # None: the bag's only Image/CompressedImage camera topic
    label_topic: str | None = DEFAULT_LABEL_TOPIC  # a missing topic means "no labels" unless required
    require_labels: bool = False
    stamp_tolerance_ms: float = 0.0  # 0: labels pair with frames of exactly the same header stamp
    pair_window_s: float = 10.0  # bag time after which an unmatched frame or label counts as unpaired
    max_frames: int | None = None
    warmup: int = 1  # first frames excluded from latency statistics (allocation, caches)
    out_bag: Path | None = None
    out_storage: str = "mcap"
    overwrite: bool = False
    overlay_alpha: float = 0.5
    copy_inputs: bool = True
    montage_frames: int = 6
    frame_callback: Callable[[FrameRecord], None] | None = None  # e.g. an overlay video writer


@dataclass
class FrameRecord:
    """One processed frame, handed to `frame_callback` (the arrays are not kept)."""

    index: int
    stamp: int
    rgb: np.ndarray
    mask: np.ndarray
    overlay: np.ndarray | None
    latency_ms: float


@dataclass
class BagResult:
    """Everything measured on one bag; `confusion` is None when the bag has no labels."""

    bag: str
    image_topic: str | None = None
    label_topic: str | None = None
    frames: int = 0
    labelled: int = 0
    unpaired_images: int = 0
    unpaired_labels: int = 0
    unpaired_stamps: list[int] = field(default_factory=list)
    skipped: int = 0  # frames that could not be decoded
    undecodable: dict[str, int] = field(default_factory=dict)  # skipped frames by reason
    dropped: int = 0  # frames the processor returned no mask for (a node over DDS that fell behind)
    latencies_ms: list[float] = field(default_factory=list)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    first_stamp: int | None = None
    last_stamp: int | None = None
    confusion: ConfusionMatrix | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    out_bag: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)  # montage frames (RGB arrays)
    uncopied_topics: list[str] = field(default_factory=list)

    def add_error(self, text: str, frames_before: int | None = None) -> None:
        for e in self.errors:  # the same problem on every frame is one entry with a count
            if e["error"] == text:
                e["count"] += 1
                return
        self.errors.append(
            {
                "bag": self.bag,
                "error": text,
                "frames_before": self.frames if frames_before is None else frames_before,
                "count": 1,
            }
        )


LabelSource = Callable[[int], np.ndarray | None]  # frame index -> label (dataset-folder labels)
