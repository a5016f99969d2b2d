"""Hard-frame mining: the frames of a bag on which the model is least sure, to label next.

Each camera frame of the bag is segmented twice, as it is and mirrored left to right. Its doubt
is the mean of two figures in 0..1:
- 1 - the mean calibrated confidence of its pixels (the weights' temperature applied);
- the share of pixels whose class changes between the plain and the mirrored pass (a street
  scene's classes do not depend on its handedness; a model that changes its mind is guessing).
The `count` most doubtful frames are written as PNGs named by their header stamp, ready for a
labelling tool, with a CSV of every frame's scores, a contact sheet and a summary. Where the bag
carries labels (`/camera/labels`, as `bevanet-make-bag --dataset` writes them), each frame's mIoU
is in the CSV and the summary compares the picked frames' mIoU with the whole bag's.
"""

from __future__ import annotations

import csv
import heapq
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from ..evaluation.metrics import ConfusionMatrix
from ..serving.decode import message_to_label, message_to_rgb
from . import messages
from .reader import BagReader, BagReadError

CSV_COLUMNS = (
    "index",
    "stamp_ns",
    "stamp_s",
    "mean_confidence",
    "low_confidence_share",
    "flip_disagreement",
    "doubt",
    "miou",
    "picked",
    "rank",
    "file",
)
LOW_CONFIDENCE = 0.5


@dataclass
class FrameScore:
    index: int
    stamp_ns: int
    mean_confidence: float
    low_confidence_share: float
    flip_disagreement: float
    miou: Optional[float] = None
    picked: bool = False
    rank: Optional[int] = None
    file: str = ""

    @property
    def doubt(self) -> float:
        return 0.5 * ((1.0 - self.mean_confidence) + self.flip_disagreement)


@dataclass
class MiningResult:
    bag: str
    image_topic: str
    label_topic: Optional[str]
    scores: list[FrameScore] = field(default_factory=list)
    picked: list[FrameScore] = field(default_factory=list)
    bag_miou: Optional[float] = None
    picked_miou: Optional[float] = None
    errors: list[str] = field(default_factory=list)


def score_frame(segmenter: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(mask, confidence, mean confidence, low-confidence share, flip disagreement) of one frame."""
    plain, mirrored = segmenter.segment_batch([rgb, np.ascontiguousarray(rgb[:, ::-1])], "rgb8", confidence=True)
    conf = plain.confidence.astype(np.float32) / 255.0
    flipped_back = mirrored.mask[:, ::-1]
    disagreement = float((flipped_back != plain.mask).mean())
    return plain.mask, plain.confidence, float(conf.mean()), float((conf < LOW_CONFIDENCE).mean()), disagreement


def _frame_miou(mask: np.ndarray, label: np.ndarray, num_classes: int) -> tuple[Optional[float], ConfusionMatrix]:
    cm = ConfusionMatrix(num_classes)
    cm.update(mask, label)
    present = (cm.matrix.sum(axis=0) + cm.matrix.sum(axis=1)) > 0
    if not present.any():
        return None, cm
    return float(np.nanmean(cm.iou()[present]) * 100.0), cm


def mine_bag(
    bag: Path,
    segmenter: Any,
    count: int,
    out_dir: Path,
    image_topic: Optional[str] = None,
    label_topic: Optional[str] = "/camera/labels",
    max_frames: Optional[int] = None,
    progress: bool = False,
) -> MiningResult:
    """Scores every camera frame of `bag`, writes the `count` most doubtful ones under `out_dir`."""
    from .evaluate import pick_image_topic

    if count < 1:
        raise ValueError(f"the number of frames to mine must be at least 1, got {count}")
    reader = BagReader(bag)
    reader.open()
    try:
        topics = reader.topics
        topic = pick_image_topic(topics, image_topic, label_topic, bag)
        labels_on = label_topic if label_topic in topics else None
        result = MiningResult(str(bag), topic, labels_on)
        num_classes = int(segmenter.info.num_classes)
        keep: list[tuple[float, int, np.ndarray, np.ndarray]] = []  # min-heap of the most doubtful
        masks: dict[int, np.ndarray] = {}  # stamp -> mask, until its label arrives
        labels: dict[int, np.ndarray] = {}
        frame_cms: dict[int, ConfusionMatrix] = {}
        by_stamp: dict[int, FrameScore] = {}

        def pair(stamp: int) -> None:
            if stamp in masks and stamp in labels:
                mask, label = masks.pop(stamp), labels.pop(stamp)
                if mask.shape == label.shape:
                    by_stamp[stamp].miou, frame_cms[stamp] = _frame_miou(mask, label, num_classes)

        wanted = [topic] + ([labels_on] if labels_on else [])
        try:
            for raw in reader.messages(wanted):
                try:
                    msg = reader.deserialize(raw)
                    stamp = messages.stamp_ns(msg) or raw.log_time
                    if raw.topic == labels_on:
                        labels[stamp] = message_to_label(msg)
                        pair(stamp)
                        continue
                    rgb = message_to_rgb(msg)
                except Exception as err:  # noqa: BLE001 - one bad message must not end the mining
                    result.errors.append(f"{raw.topic} at log time {raw.log_time}: {err}")
                    continue
                if max_frames is not None and len(result.scores) >= max_frames:
                    break
                mask, conf, mean_conf, low, flip = score_frame(segmenter, rgb)
                score = FrameScore(len(result.scores), int(stamp), mean_conf, low, flip)
                result.scores.append(score)
                by_stamp[stamp] = score
                if labels_on:
                    masks[stamp] = mask
                    pair(stamp)
                entry = (score.doubt, score.index, rgb, mask)
                if len(keep) < count:
                    heapq.heappush(keep, entry)
                elif entry[:2] > keep[0][:2]:
                    heapq.heapreplace(keep, entry)
                if progress and len(result.scores) % 20 == 0:
                    print(f"  {len(result.scores)} frames scored", flush=True)
        except BagReadError as err:
            result.errors.append(str(err))
    finally:
        reader.close()
    if not result.scores:
        raise ValueError(f"no camera frame of {bag} on {topic} could be read")
    chosen = sorted(keep, key=lambda e: (-e[0], e[1]))
    _write_outputs(result, chosen, segmenter, out_dir)
    if frame_cms:
        whole, picked = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
        for stamp, cm in frame_cms.items():
            whole.merge(cm)
            if by_stamp[stamp].picked:
                picked.merge(cm)
        result.bag_miou = float(whole.miou())
        if picked.matrix.sum():
            result.picked_miou = float(picked.miou())
    _write_tables(result, segmenter, out_dir)
    return result


def _write_outputs(result: MiningResult, chosen: list, segmenter: Any, out_dir: Path) -> None:
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    tiles = []
    for rank, (_, index, rgb, mask) in enumerate(chosen, 1):
        score = result.scores[index]
        score.picked, score.rank = True, rank
        name = f"{score.stamp_ns}.png"
        score.file = f"images/{name}"
        cv2.imwrite(str(images / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        result.picked.append(score)
        tiles.append((score, segmenter.overlay(rgb, mask, 0.5)))
    cv2.imwrite(str(out_dir / "contact_sheet.png"), cv2.cvtColor(contact_sheet(tiles), cv2.COLOR_RGB2BGR))


def contact_sheet(tiles: list[tuple[FrameScore, np.ndarray]], width: int = 320, columns: int = 4) -> np.ndarray:
    """Overlays of the picked frames, most doubtful first, each captioned with its rank, stamp and
    scores (RGB)."""
    cells = []
    for score, overlay in tiles:
        h, w = overlay.shape[:2]
        cell = cv2.resize(overlay, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        caption = np.full((36, width, 3), 255, np.uint8)
        lines = (
            f"#{score.rank}  t={score.stamp_ns / 1e9:.3f} s",
            f"conf {score.mean_confidence:.2f}  flip {score.flip_disagreement:.1%}"
            + (f"  mIoU {score.miou:.0f}" if score.miou is not None else ""),
        )
        for i, text in enumerate(lines):
            cv2.putText(caption, text, (4, 14 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.vstack([caption, cell]))
    height = max(c.shape[0] for c in cells)
    cells = [np.vstack([c, np.full((height - c.shape[0], width, 3), 255, np.uint8)]) for c in cells]
    while len(cells) % columns and len(cells) > columns:
        cells.append(np.full_like(cells[0], 255))
    rows = [np.hstack(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    return np.vstack(rows)


def _write_tables(result: MiningResult, segmenter: Any, out_dir: Path) -> None:
    with open(out_dir / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for s in result.scores:
            writer.writerow(
                [
                    s.index,
                    s.stamp_ns,
                    f"{s.stamp_ns / 1e9:.9f}",
                    f"{s.mean_confidence:.5f}",
                    f"{s.low_confidence_share:.5f}",
                    f"{s.flip_disagreement:.5f}",
                    f"{s.doubt:.5f}",
                    "" if s.miou is None else f"{s.miou:.3f}",
                    int(s.picked),
                    "" if s.rank is None else s.rank,
                    s.file,
                ]
            )
    info = segmenter.info
    classes = [
        {"id": i, "name": n, "color": list(c)}
        for i, (n, c) in enumerate(zip(info.class_names, info.palette, strict=True))
    ]
    (out_dir / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    summary = {
        "bag": result.bag,
        "image_topic": result.image_topic,
        "label_topic": result.label_topic,
        "frames": len(result.scores),
        "picked": [
            {"rank": s.rank, "stamp_ns": s.stamp_ns, "file": s.file, "doubt": round(s.doubt, 5), "miou": s.miou}
            for s in result.picked
        ],
        "temperature": float(getattr(segmenter, "temperature", 1.0)),
        "bag_miou": result.bag_miou,
        "picked_miou": result.picked_miou,
        "errors": result.errors[:50],
    }
    (out_dir / "mined.json").write_text(json.dumps(summary, indent=1) + "\n")
