"""Replay bags through the segmentation runtime: accuracy, latency, and an output bag.

Per camera frame this does what the ROS node does, with the same code: the message is decoded by
`serving.decode` and segmented by `serving.StreamSegmenter.segment_frames`; mask, colour mask and
overlay are written with the input header. The mask is then paired with the ground-truth label
of the same header stamp and scored in a confusion matrix.

Label convention: class ids 0..N-1; 255 and any id >= N (e.g. CamVid's raw void 11) are ignored.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np

from ..evaluation.metrics import ConfusionMatrix, latency_summary
from ..serving.decode import ImageDecodeError, message_to_label, message_to_rgb
from ..serving.stream import StreamSegmenter
from . import messages
from .reader import BagReader, BagReadError, RawMessage, TopicInfo
from .writer import BagWriter

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


class RuntimeProcessor:
    """The node's runtime in-process: each frame goes through the node's own segmentation step
    (`StreamSegmenter.segment_frames`), one frame at a time."""

    def __init__(self, segmenter: Any):
        self.segmenter = segmenter
        self.stream = StreamSegmenter(segmenter, ["bag"])
        self.class_names = list(segmenter.class_names)
        self.num_classes = int(segmenter.info.num_classes)

    def process(self, rgb: np.ndarray, header: Any) -> tuple[np.ndarray | None, float, dict[str, float]]:
        t0 = time.perf_counter()
        (res,) = self.stream.segment_frames([rgb])
        latency = (time.perf_counter() - t0) * 1e3
        return (None, latency, {}) if res is None else (res.mask, latency, dict(res.timings))

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        return self.segmenter.colorize(mask)

    def overlay(self, rgb: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
        return self.segmenter.overlay(rgb, mask, alpha)


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


# ------------------------------------------------------------------------------------ topics
def pick_image_topic(topics: dict[str, TopicInfo], wanted: str | None, label_topic: str | None, bag: Path) -> str:
    """The camera topic: `wanted` if given (checked), else the only image topic of the bag."""
    images = {t: i for t, i in topics.items() if i.msgtype in messages.IMAGE_TYPES}
    if wanted is not None:
        if wanted not in topics:
            raise BagEvalError(f"bag {bag} has no topic {wanted}; image topics: {sorted(images) or 'none'}")
        if topics[wanted].msgtype not in messages.IMAGE_TYPES:
            raise BagEvalError(f"topic {wanted} in {bag} is {topics[wanted].msgtype}, not an image")
        return wanted
    cameras = [t for t in images if t != label_topic and t not in PAST_OUTPUT_TOPICS]
    if len(cameras) == 1:
        return cameras[0]
    if not cameras:
        raise BagEvalError(f"bag {bag} has no Image/CompressedImage topic (topics: {sorted(topics)})")
    raise BagEvalError(f"bag {bag} has several image topics {sorted(cameras)}; choose one with --image-topic")


# ------------------------------------------------------------------------------------ pairing
class StampPairer:
    """Pairs predictions and labels by header stamp as they stream in, with bounded memory.

    Items wait at most `window_ns` of bag time for their partner, then count as unpaired.
    """

    def __init__(
        self,
        on_pair: Callable[[np.ndarray, np.ndarray, int], None],
        tolerance_ns: int = 0,
        window_ns: int = 10_000_000_000,
    ):
        self.on_pair = on_pair
        self.tolerance_ns = int(tolerance_ns)
        self.window_ns = int(window_ns)
        self.preds: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.labels: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.paired = 0
        self.unpaired_preds: list[int] = []
        self.unpaired_labels: list[int] = []

    def _match(self, table: collections.OrderedDict[int, np.ndarray], stamp: int) -> int | None:
        if stamp in table:
            return stamp
        if self.tolerance_ns <= 0 or not table:
            return None
        best = min(table, key=lambda s: abs(s - stamp))
        return best if abs(best - stamp) <= self.tolerance_ns else None

    def add_pred(self, stamp: int, mask: np.ndarray | None) -> None:
        """A prediction (None: a dropped frame; its label then counts as an unpaired label)."""
        if mask is None:
            hit = self._match(self.labels, stamp)
            if hit is not None:
                self.labels.pop(hit)
                self.unpaired_labels.append(hit)
            return
        hit = self._match(self.labels, stamp)
        if hit is None:
            self.preds[stamp] = mask
        else:
            self._pair(mask, self.labels.pop(hit), stamp)
        self._expire(stamp)

    def add_label(self, stamp: int, label: np.ndarray) -> None:
        hit = self._match(self.preds, stamp)
        if hit is None:
            self.labels[stamp] = label
        else:
            self._pair(self.preds.pop(hit), label, stamp)
        self._expire(stamp)

    def _pair(self, pred: np.ndarray, label: np.ndarray, stamp: int) -> None:
        self.paired += 1
        self.on_pair(pred, label, stamp)

    def _expire(self, now: int) -> None:
        for table, lost in (
            (self.preds, self.unpaired_preds),
            (self.labels, self.unpaired_labels),
        ):
            while table:
                oldest = next(iter(table))
                if now - oldest <= self.window_ns:
                    break
                table.pop(oldest)
                lost.append(oldest)

    def finish(self) -> None:
        """Everything still waiting is unpaired."""
        self.unpaired_preds.extend(self.preds)
        self.unpaired_labels.extend(self.labels)
        self.preds.clear()
        self.labels.clear()


# ------------------------------------------------------------------------------------ evaluation
LabelSource = Callable[[int], np.ndarray | None]  # frame index -> label (dataset-folder labels)


def _sample_indices(total: int | None, k: int) -> set:
    if k <= 0:
        return set()
    if not total:
        return set(range(k))
    return {int(round(i)) for i in np.linspace(0, total - 1, min(k, total))}


class BagEvaluation:
    """One bag replayed through a processor. `run()` opens the bag, picks the topics, replays
    camera frames and labels in log order, scores the pairs and returns the `BagResult`.

    A truncated or corrupt bag keeps every frame processed before the fault (and the output bag
    gets those frames); option errors (bad topic names) raise BagEvalError.
    """

    def __init__(
        self,
        path: Union[str, Path],
        processor: FrameProcessor,
        options: EvalOptions | None = None,
        label_source: LabelSource | None = None,
    ):
        self.path = Path(path)
        self.processor = processor
        self.opt = options or EvalOptions()
        self.label_source = label_source
        self.res = BagResult(bag=str(self.path))
        self.reader: BagReader | None = None
        self.writer: BagWriter | None = None
        self.image_topic = ""
        self.pairer: StampPairer | None = None
        self.sample_at: set = set()

    def run(self) -> BagResult:
        try:
            self.reader = BagReader(self.path)
            self.reader.open()
        except BagReadError as err:
            self.res.add_error(str(err), 0)
            return self.res
        try:
            topics = self._topics()
            if topics is not None:
                self._prepare(topics)
                self._replay(topics)
                self._finish()
        finally:
            if self.writer is not None:
                self.writer.abort()
            self.reader.close()
        return self.res

    def _topics(self) -> dict[str, TopicInfo] | None:
        """The bag's topics (scanned in a damaged bag); None after recording why none is
        readable."""
        reader = self.reader
        topics = reader.topics if reader.recovered is None else reader.scan_topics()
        if reader.recovered is not None and not topics:
            try:  # nothing readable: let the reader say why
                for _ in reader.messages():
                    pass
            except BagReadError as err:
                self.res.add_error(str(err), 0)
            return None
        return topics

    def _prepare(self, topics: dict[str, TopicInfo]) -> None:
        opt, res = self.opt, self.res
        label_topic = opt.label_topic if self.label_source is None else None
        self.image_topic = pick_image_topic(topics, opt.image_topic, label_topic, self.path)
        has_labels = self.label_source is not None or (label_topic is not None and label_topic in topics)
        if label_topic in topics and topics[label_topic].msgtype not in messages.IMAGE_TYPES:
            raise BagEvalError(
                f"label topic {label_topic} in {self.path} is {topics[label_topic].msgtype}; "
                "expected a mono8 sensor_msgs/Image"
            )
        if opt.require_labels and not has_labels:
            raise BagEvalError(f"bag {self.path} has no label topic {label_topic} (topics: {sorted(topics)})")
        res.image_topic = self.image_topic
        res.label_topic = label_topic if self.label_source is None and has_labels else None
        if has_labels:
            res.confusion = ConfusionMatrix(self.processor.num_classes, ignore_index=255)
        self.pairer = StampPairer(self._score, int(opt.stamp_tolerance_ms * 1e6), int(opt.pair_window_s * 1e9))
        if opt.out_bag is not None:
            self.writer = _open_output(self.reader, topics, opt, self.image_topic)
        count = topics[self.image_topic].count if self.reader.recovered is None else None
        self.sample_at = _sample_indices(count, opt.montage_frames)

    def _replay(self, topics: dict[str, TopicInfo]) -> None:
        opt, res, writer = self.opt, self.res, self.writer
        copy = writer is not None and opt.copy_inputs
        wanted = [self.image_topic] + ([res.label_topic] if res.label_topic else [])
        t_start = time.perf_counter()
        last_frame_time = None
        try:
            for raw in self.reader.messages(list(topics) if copy else wanted):
                if (
                    opt.max_frames is not None
                    and res.frames >= opt.max_frames
                    and (raw.topic == self.image_topic or last_frame_time is None or raw.log_time > last_frame_time)
                ):
                    break  # messages stamped like the last frame (labels, info) are still read
                if copy:
                    _copy_input(writer, self.reader, raw, res)
                if raw.topic == self.image_topic:
                    last_frame_time = raw.log_time
                    self._on_frame(raw)
                elif raw.topic == res.label_topic:
                    self._on_label(raw)
        except BagReadError as err:
            res.add_error(str(err))
        res.wall_s = time.perf_counter() - t_start

    def _finish(self) -> None:
        res = self.res
        if self.label_source is None:
            self.pairer.finish()
            if res.confusion is not None:
                res.unpaired_images = len(self.pairer.unpaired_preds)
                res.unpaired_labels = len(self.pairer.unpaired_labels)
                res.unpaired_stamps = sorted(self.pairer.unpaired_preds)[:50]
        if self.writer is not None:
            res.out_bag = str(self.writer.close())
            self.writer = None

    def _score(self, pred: np.ndarray, label: np.ndarray, stamp: int) -> None:
        res = self.res
        if pred.shape != label.shape:
            res.add_error(
                f"label at stamp {stamp} is {label.shape[1]}x{label.shape[0]} but the camera "
                f"frame is {pred.shape[1]}x{pred.shape[0]}; not scored"
            )
            return
        res.confusion.update(pred, label)
        res.labelled += 1
        for sample in res.samples:
            if sample["stamp"] == stamp:
                sample["label"] = label

    def _on_label(self, raw: RawMessage) -> None:
        try:
            msg = self.reader.deserialize(raw)
            stamp = messages.stamp_ns(msg) or raw.log_time
            self.pairer.add_label(stamp, message_to_label(msg))
        except Exception as err:  # noqa: BLE001 - ImageDecodeError, or a corrupt message
            self.res.add_error(f"label on {raw.topic}: {err}")

    def _on_frame(self, raw: RawMessage) -> None:
        opt, res, processor = self.opt, self.res, self.processor
        index = res.frames + res.skipped
        try:
            msg = self.reader.deserialize(raw)
            rgb = message_to_rgb(msg)
        except Exception as err:  # noqa: BLE001 - one bad frame must not end the evaluation
            kind = err.kind if isinstance(err, ImageDecodeError) else "bad_message"
            res.skipped += 1
            res.undecodable[kind] = res.undecodable.get(kind, 0) + 1
            res.add_error(f"frame on {raw.topic} could not be decoded ({kind}): {err}")
            return
        stamp = messages.stamp_ns(msg) or raw.log_time
        try:
            mask, latency, stages = processor.process(rgb, msg.header)
        except (ValueError, RuntimeError, MemoryError) as err:  # counted, like the node does
            mask, latency, stages = None, 0.0, {}
            res.add_error(
                f"frame on {raw.topic} at stamp {stamp} was rejected by the runtime: {type(err).__name__}: {err}"
            )
        if mask is None:
            res.dropped += 1
            if res.confusion is not None and self.label_source is None:
                self.pairer.add_pred(stamp, None)  # its label must not wait for it: unpaired
            return
        res.frames += 1
        if res.frames > opt.warmup or opt.warmup <= 0:
            res.latencies_ms.append(latency)
            for k, v in stages.items():
                res.stage_ms.setdefault(k, []).append(float(v))
        res.first_stamp = stamp if res.first_stamp is None else min(res.first_stamp, stamp)
        res.last_stamp = stamp if res.last_stamp is None else max(res.last_stamp, stamp)
        sampled = index in self.sample_at
        need_overlay = self.writer is not None or opt.frame_callback is not None or sampled
        overlay = processor.overlay(rgb, mask, opt.overlay_alpha) if need_overlay else None
        if sampled:  # before pairing, so that the scorer can attach the label
            res.samples.append({"stamp": stamp, "rgb": rgb, "overlay": overlay, "label": None})
        if self.label_source is not None:
            label = self.label_source(index)
            if label is not None:
                self._score(mask, label, stamp)
        elif res.confusion is not None:
            self.pairer.add_pred(stamp, mask)
        if self.writer is not None:
            self._write_outputs(raw.log_time, stamp, str(msg.header.frame_id), mask, overlay)
        if opt.frame_callback is not None:
            opt.frame_callback(FrameRecord(index, stamp, rgb, mask, overlay, latency))

    def _write_outputs(self, log_time, stamp, frame_id, mask, overlay) -> None:
        color = self.processor.colorize(mask)
        for topic, image, encoding in ((MASK_TOPIC, mask, "mono8"), (COLOR_TOPIC, color, "rgb8")):
            self.writer.write(topic, log_time, messages.image_msg(image, encoding, stamp, frame_id))
        self.writer.write(
            OVERLAY_TOPIC,
            log_time,
            messages.compressed_msg(overlay, stamp, frame_id, "jpeg", OVERLAY_JPEG_QUALITY),
        )


def evaluate_bag(
    path: Union[str, Path],
    processor: FrameProcessor,
    options: EvalOptions | None = None,
    label_source: LabelSource | None = None,
) -> BagResult:
    """Replay one bag through `processor` (see `BagEvaluation`)."""
    return BagEvaluation(path, processor, options, label_source).run()


def _open_output(reader: BagReader, topics: dict[str, TopicInfo], opt: EvalOptions, image_topic: str) -> BagWriter:
    writer = BagWriter(
        opt.out_bag,
        storage=opt.out_storage,
        overwrite=opt.overwrite,
        custom_data={"bevanet.source_bag": str(reader.path), "bevanet.image_topic": image_topic},
        inputs=[reader.path],
    )
    writer.open()
    try:
        if opt.copy_inputs:
            for info in topics.values():
                if info.topic in PAST_OUTPUT_TOPICS:
                    continue  # an evaluated bag evaluated again: its old outputs are replaced
                if reader.ros1 or not info.msgdef or not info.digest:
                    # ROS 1 types are converted; damaged bags lacking definitions use Humble
                    if info.msgtype in messages.typestore().fielddefs:
                        writer.add_topic(info.topic, info.msgtype)
                else:
                    writer.add_topic(info.topic, info.msgtype, msgdef=info.msgdef, rihs01=info.digest)
        for topic in OUTPUT_TOPICS:
            kind = messages.COMPRESSED_IMAGE if topic == OVERLAY_TOPIC else messages.IMAGE
            writer.add_topic(topic, kind)
    except BaseException:
        writer.abort()
        raise
    return writer


def _copy_input(writer: BagWriter, reader: BagReader, raw: RawMessage, res: BagResult) -> None:
    if raw.topic in PAST_OUTPUT_TOPICS:
        return
    if raw.topic not in writer.counts:
        if raw.topic not in res.uncopied_topics:
            res.uncopied_topics.append(raw.topic)
        return
    try:
        writer.write_raw(raw.topic, raw.log_time, reader.to_cdr(raw))
    except Exception as err:  # one odd message must not stop the evaluation
        res.add_error(f"could not copy a {raw.msgtype} message on {raw.topic}: {err}")


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
