"""One bag replayed through a processor: topics picked, camera frames decoded and segmented in log
order, masks paired with labels and scored, outputs written to the output bag."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Union

import numpy as np

from ..evaluation.metrics import ConfusionMatrix
from ..serving.decode import ImageDecodeError, message_to_label, message_to_rgb
from . import messages
from .pairing import StampPairer
from .reader import BagReader, BagReadError, RawMessage, TopicInfo
from .results import (
    COLOR_TOPIC,
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
from .writer import BagWriter


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
