"""Camera messages in, segmentation messages out: everything one node does, in steps that the
plain node runs at construction and the lifecycle node spreads over its transitions.

    load_model -> create_outputs -> create_inputs -> start      (node up / configure + activate)
    stop -> destroy_inputs -> destroy_outputs -> unload_model   (deactivate + cleanup / shutdown)

Executor callbacks only drop each message into its camera's latest-frame slot; one worker thread
decodes, runs one batched inference for the frames that arrived together, and publishes.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
import time
from typing import Any, NamedTuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from .conversions import ImageDecodeError, array_to_imgmsg, compressed_msg_to_rgb, imgmsg_to_rgb
from .frame_slots import LatestFrameSlots
from .labels import label_info_json
from .params import NodeSettings
from .stats import LogThrottle, NodeStats

try:  # vision_msgs is not installable everywhere; see labels.py for the fallback
    from vision_msgs.msg import LabelInfo, VisionClass  # type: ignore
except ImportError:
    LabelInfo = None
    VisionClass = None

OUTPUTS = ("mask", "color_mask", "overlay", "confidence")
_RELIABILITY = {
    "reliable": ReliabilityPolicy.RELIABLE,
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
}


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the parameter and file involved."""


class FrameItem(NamedTuple):
    msg: Any
    compressed: bool
    received: float  # time.monotonic() at the subscription callback


def input_qos(name: str, depth: int) -> QoSProfile:
    """Camera subscription QoS by name: sensor_data, best_effort, reliable, system_default."""
    if name == "sensor_data":
        base = qos_profile_sensor_data
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=base.reliability,
            durability=base.durability,
        )
    if name == "system_default":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=qos_profile_system_default.reliability,
            durability=qos_profile_system_default.durability,
        )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[name],
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(name: str, depth: int) -> QoSProfile:
    """Image output QoS ('reliable' matches RViz's default subscription)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[name],
        durability=DurabilityPolicy.VOLATILE,
    )


LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def build_segmenter(settings: NodeSettings) -> Any:
    """A `bevanet_core.runtime.Segmenter` for `settings`; raises ModelLoadError with the cause."""
    if settings.model_path is not None:
        which = "engine" if settings.engine else "weights"
        if not os.path.isfile(settings.model_path):
            raise ModelLoadError(
                f"parameter {which!r}: file {settings.model_path!r} does not exist"
            )
    else:
        from bevanet_core.checkpoint import DEFAULT_WEIGHTS  # imports torch: only when needed

        if not DEFAULT_WEIGHTS.is_file():
            raise ModelLoadError(
                "parameter 'weights' is empty, so the shipped CamVid BEVANet-S model is used, but "
                f"{DEFAULT_WEIGHTS} does not exist (it is produced by training; see the README). "
                "Pass weights:=<file.safetensors> or engine:=<file>."
            )
    from bevanet_core.runtime import Segmenter, SegmenterConfig

    cfg = SegmenterConfig(
        weights=settings.model_path,
        variant=settings.variant or None,
        backend=settings.backend,
        device=settings.device,
        precision=settings.precision,
        input_size=settings.input_size,
        resize=settings.resize,
        upsample=settings.upsample,
        num_threads=settings.num_threads or None,
    )
    try:
        return Segmenter(cfg)
    except Exception as exc:  # noqa: BLE001 - any failure here is reported the same way
        raise ModelLoadError(
            f"could not load the model (weights={settings.model_path or 'shipped default'!s}, "
            f"backend={settings.backend}, device={settings.device}, "
            f"precision={settings.precision}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


class SegmentationPipeline:
    """The state of one segmentation node between `load_model` and `unload_model`."""

    def __init__(self, node: Node, managed: bool = False) -> None:
        self.node = node
        self.managed = managed
        self.settings: NodeSettings | None = None
        self.segmenter: Any = None
        self.stats: NodeStats | None = None
        self.cameras: list[str] = []
        self._subs: list[Any] = []
        self._pubs: list[dict[str, Any]] = []
        self._label_pubs: list[Any] = []
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._slots: LatestFrameSlots | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._throttle = LogThrottle()
        self._last_reported_errors = 0
        self.published_counts: dict[str, int] = collections.Counter()  # per output, all cameras
        self.active = False

    # ------------------------------------------------------------------ lifecycle steps

    def load_model(self, settings: NodeSettings) -> None:
        """Builds the segmenter (and warms it up). Raises ModelLoadError."""
        self.settings = settings
        self.cameras = settings.cameras
        self.stats = NodeStats(self.cameras)
        self._throttle = LogThrottle(settings.error_log_period_s)
        if settings.num_threads > 0:
            import torch

            torch.set_num_threads(settings.num_threads)
        self.segmenter = build_segmenter(settings)
        if settings.warmup:
            w, h = self.segmenter.input_size
            self.segmenter.segment(np.zeros((h, w, 3), np.uint8), "rgb8")
        info = self.segmenter.info
        net_w, net_h = self.segmenter.input_size
        self.node.get_logger().info(
            f"loaded {info.variant} ({info.num_classes} classes, "
            f"{info.dataset or 'unknown dataset'}) from "
            f"{settings.model_path or 'the shipped default weights'} on "
            f"{settings.backend}/{settings.device} {settings.precision}, "
            f"network input {net_w}x{net_h} ({settings.resize})"
        )
        if self.segmenter.backend_choice is not None:
            from bevanet_core.runtime.auto import describe

            self.node.get_logger().info(f"backend auto: {describe(self.segmenter.backend_choice)}")

    def create_outputs(self) -> None:
        """Publishers for every camera, the latched label info, and the diagnostics timer."""
        s = self._require_settings()
        make = self.node.create_lifecycle_publisher if self.managed else self.node.create_publisher
        qos = output_qos(s.output_qos, s.output_qos_depth)
        self._pubs = []
        for i in range(len(s.input_topics)):
            prefix = s.output_prefix(i)
            self._pubs.append({name: make(Image, prefix + name, qos) for name in OUTPUTS})
        self._label_pubs = []
        if LabelInfo is not None:
            self._label_pubs.append(make(LabelInfo, "~/label_info", LATCHED_QOS))
        else:
            self._label_pubs.append(make(String, "~/label_info", LATCHED_QOS))
        self._label_pubs.append(make(String, "~/label_info_json", LATCHED_QOS))
        self._diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.node.create_timer(s.diagnostics_period_s, self.publish_diagnostics)

    def publish_label_info(self) -> None:
        """Publishes the class names and colours once (latched: late subscribers get them)."""
        info = self.segmenter.info
        text = label_info_json(
            info.class_names,
            info.palette,
            ignore_index=info.ignore_index,
            variant=info.variant,
            dataset=info.dataset or "",
        )
        for pub in self._label_pubs:
            if pub.msg_type is String:
                pub.publish(String(data=text))
            else:
                msg = LabelInfo()
                msg.header.stamp = self.node.get_clock().now().to_msg()
                msg.class_map = [
                    VisionClass(class_id=i, class_name=n) for i, n in enumerate(info.class_names)
                ]
                msg.threshold = 0.0
                pub.publish(msg)

    def create_inputs(self) -> None:
        """One subscription per camera: raw Image, or CompressedImage on <topic>/compressed."""
        s = self._require_settings()
        qos = input_qos(s.input_qos, s.input_qos_depth)
        compressed = s.input_transport == "compressed"
        self._slots = LatestFrameSlots(len(s.input_topics))
        self._subs = []
        for i, topic in enumerate(s.input_topics):
            if compressed:
                name = self.node.resolve_topic_name(topic) + "/compressed"
                sub = self.node.create_subscription(
                    CompressedImage, name, functools.partial(self.on_frame, i, True), qos
                )
            else:
                sub = self.node.create_subscription(
                    Image, topic, functools.partial(self.on_frame, i, False), qos
                )
            self._subs.append(sub)
            self.node.get_logger().info(
                f"camera {self.cameras[i]!r}: {sub.topic_name} "
                f"({s.input_transport}, QoS {s.input_qos}) -> "
                f"{self.node.resolve_topic_name(s.output_prefix(i) + 'mask')}"
            )

    def start(self) -> None:
        """Starts the inference worker."""
        if self._slots is None:
            raise RuntimeError("create_inputs() must run before start()")
        self._stop.clear()
        self._worker = threading.Thread(
            target=self._run, name=f"{self.node.get_name()}-inference", daemon=True
        )
        self._worker.start()
        self.active = True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the worker after the batch in flight (pending frames are dropped)."""
        self.active = False
        self._stop.set()
        if self._slots is not None:
            self._slots.close()
        if self._worker is not None:
            self._worker.join(timeout_s)
            if self._worker.is_alive():
                self.node.get_logger().warning(
                    f"inference worker did not stop within {timeout_s} s"
                )
            self._worker = None

    def destroy_inputs(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []
        self._slots = None

    def destroy_outputs(self) -> None:
        destroy = (
            self.node.destroy_lifecycle_publisher if self.managed else self.node.destroy_publisher
        )
        for pubs in self._pubs:
            for pub in pubs.values():
                destroy(pub)
        for pub in self._label_pubs:
            destroy(pub)
        self._pubs, self._label_pubs = [], []
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.node.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    def unload_model(self) -> None:
        """Frees the model (and GPU memory)."""
        if self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - freeing is best effort
                pass

    def shutdown(self) -> None:
        """Every teardown step, safe to call in any state and more than once."""
        self.stop()
        self.destroy_inputs()
        self.destroy_outputs()
        self.unload_model()

    def update_settings(self, settings: NodeSettings) -> None:
        """Applies dynamic parameters (alpha, which outputs, batch window, log period)."""
        self.settings = settings
        self._throttle.period_s = settings.error_log_period_s

    def _require_settings(self) -> NodeSettings:
        if self.settings is None or self.segmenter is None:
            raise RuntimeError("load_model() must run first")
        return self.settings

    # ------------------------------------------------------------------ executor side

    def on_frame(self, index: int, compressed: bool, msg: Any) -> None:
        """Subscription callback: keep only the newest frame per camera (O(1), no decoding)."""
        slots, stats = self._slots, self.stats
        if slots is None or stats is None:
            return
        stats.on_received(self.cameras[index])
        if slots.put(index, FrameItem(msg, compressed, time.monotonic())):
            stats.on_dropped()

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every received frame has been processed or dropped (for tests and tools)."""
        slots = self._slots
        return slots.wait_idle(timeout_s) if slots is not None else True

    # ------------------------------------------------------------------ worker side

    def _run(self) -> None:
        slots = self._slots
        assert slots is not None
        while not self._stop.is_set():
            settings = self.settings
            taken = slots.take(batch_window_s=settings.batch_window_ms / 1000.0, timeout_s=0.25)
            if not taken:
                continue
            try:
                self._process(taken, settings)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                self.stats.on_inference_error(f"{type(exc).__name__}: {exc}")
                self._log_problem("internal", f"segmentation failed: {type(exc).__name__}: {exc}")
            finally:
                slots.task_done()

    def _decode(self, index: int, item: FrameItem) -> np.ndarray | None:
        try:
            if item.compressed:
                return compressed_msg_to_rgb(item.msg)
            return imgmsg_to_rgb(item.msg)
        except ImageDecodeError as exc:
            message = f"camera {self.cameras[index]!r}: dropped a frame: {exc}"
            self.stats.on_bad_frame(exc.kind, message)
            self._log_problem(exc.kind, message)
            return None

    def _process(self, taken: list[tuple[int, FrameItem]], s: NodeSettings) -> None:
        batch: list[tuple[int, FrameItem, np.ndarray]] = []
        for index, item in taken:
            rgb = self._decode(index, item)
            if rgb is not None:
                batch.append((index, item, rgb))
        if not batch:
            return
        want_conf = s.publish_confidence and any(
            self._pubs[i]["confidence"].get_subscription_count() > 0 for i, _, _ in batch
        )
        seg = self.segmenter
        t0 = time.perf_counter()
        try:
            results = seg.segment_batch([rgb for _, _, rgb in batch], "rgb8", confidence=want_conf)
        except ValueError as exc:
            # a frame the runtime rejects must not take the other cameras down: retry one by one
            if len(batch) == 1:
                raise
            self.node.get_logger().debug(f"batch failed ({exc}); segmenting frames one by one")
            results = []
            kept = []
            for entry in batch:
                try:
                    results.append(seg.segment(entry[2], "rgb8", confidence=want_conf))
                    kept.append(entry)
                except ValueError as one:
                    self.stats.on_inference_error(str(one))
                    self._log_problem("inference", f"camera {self.cameras[entry[0]]!r}: {one}")
            batch = kept
        self.stats.on_batch((time.perf_counter() - t0) * 1000.0)
        for (index, item, rgb), res in zip(batch, results, strict=True):
            self._publish(index, item, rgb, res, s)

    def _publish(
        self, index: int, item: FrameItem, rgb: np.ndarray, res: Any, s: NodeSettings
    ) -> None:
        pubs = self._pubs[index]
        header = item.msg.header
        counts = self.published_counts
        if s.publish_mask:
            pubs["mask"].publish(array_to_imgmsg(res.mask, "mono8", header))
            counts["mask"] += 1
        # colour mask and overlay cost a lookup and a blend per pixel: only for actual viewers
        if s.publish_color_mask and pubs["color_mask"].get_subscription_count() > 0:
            color = res.color if res.color is not None else self.segmenter.colorize(res.mask)
            pubs["color_mask"].publish(array_to_imgmsg(color, "rgb8", header))
            counts["color_mask"] += 1
        if s.publish_overlay and pubs["overlay"].get_subscription_count() > 0:
            overlay = self.segmenter.overlay(rgb, res.mask, s.overlay_alpha)
            pubs["overlay"].publish(array_to_imgmsg(overlay, "rgb8", header))
            counts["overlay"] += 1
        if s.publish_confidence and res.confidence is not None:
            pubs["confidence"].publish(array_to_imgmsg(res.confidence, "mono8", header))
            counts["confidence"] += 1
        self.stats.on_published((time.monotonic() - item.received) * 1000.0)

    def _log_problem(self, kind: str, message: str) -> None:
        allowed, suppressed = self._throttle.allow(kind)
        if allowed:
            more = f" ({suppressed} more like this since the last report)" if suppressed else ""
            self.node.get_logger().error(message + more)

    # ------------------------------------------------------------------ diagnostics

    def diagnostic_status(self) -> DiagnosticStatus:
        """The node's health as one DiagnosticStatus (also used by tests)."""
        s = self.settings
        status = DiagnosticStatus()
        status.name = f"{self.node.get_fully_qualified_name()}: semantic segmentation"
        # the backend that runs, also when 'auto' chose it
        backend = self.segmenter.backend.name if self.segmenter is not None else None
        if s is None:
            status.hardware_id = "unconfigured"
        else:
            status.hardware_id = f"{backend or s.backend}:{s.device}"
        snap = self.stats.snapshot() if self.stats is not None else {}
        errors = int(snap.get("frames_bad", 0)) + int(snap.get("inference_errors", 0))
        new_errors = errors - self._last_reported_errors
        self._last_reported_errors = errors
        if not self.active:
            status.level, status.message = DiagnosticStatus.OK, "inactive"
        elif new_errors > 0:
            status.level = DiagnosticStatus.ERROR
            status.message = (
                f"{new_errors} bad frames or inference errors since the last report: "
                f"{snap.get('last_error')}"
            )
        elif snap.get("frames_received", 0) == 0:
            status.level, status.message = DiagnosticStatus.WARN, "no camera frames received yet"
        else:
            status.level = DiagnosticStatus.OK
            status.message = (
                f"{snap['output_rate_hz']:.1f} Hz out, "
                f"inference {snap['inference_ms_mean']:.1f} ms, "
                f"end-to-end {snap['end_to_end_ms_mean']:.1f} ms"
            )
        status.values = [
            KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v))
            for k, v in snap.items()
        ]
        return status

    def publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self._diag_pub.publish(msg)
