"""Per-camera health: is the camera usable, and is the model within its depth? No ROS here.

    monitor = HealthMonitor("front", HealthThresholds())
    monitor.update(rgb, stamp_s=..., encoding="bgr8", confidence=res.confidence, mask=res.mask)
    level, message, values = monitor.status()     # "OK" / "WARN", the reasons, the figures

Camera checks, every frame, on a 320-pixel-wide grey copy of it (so the figures do not depend on
the resolution):
- black: the 99th percentile of the luma below `black_p99` (a covered lens, a dead sensor);
- saturated: the share of pixels at 250 or more above `saturated_share` (a blinded camera);
- frozen: `frozen_frames` frames in a row, or `frozen_s` seconds by their stamps, whose mean
  absolute difference from the frame before is at most `frozen_diff` grey levels (a stuck driver);
- noise: the noise sigma (Immerkaer's estimate) above `noise_sigma` (a broken cable or sensor);
- blur: the mean absolute Laplacian below `blur_sharpness` (fog on the lens, lost focus);
- a resolution or encoding change, and a stamp going backwards: held for `event_hold_frames`.
Model checks, averaged over the last `window` frames that carry the calibrated confidence:
- the mean confidence below `min_mean_confidence`, or the share of pixels whose confidence is
  under `low_confidence` above `max_low_confidence_share`;
- the class distribution far from the one seen on normal frames (total variation distance above
  `max_class_distance`), or the share of road under `min_road_share` (no road in a front camera).

The defaults are fitted on normal footage by `scripts/fit_health_thresholds.py` (what it measured
and the margins it leaves: docs/ros-node.md). A camera whose frames are fine again goes back to
OK as soon as the condition is gone (`event_hold_frames` after a one-off event).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

OK, WARN = "OK", "WARN"
ANALYSIS_WIDTH = 320
CLIP_LEVEL = 250  # a pixel this bright or brighter counts as saturated
MODEL_SAMPLE_WIDTH = 160  # the confidence map and mask are read on a grid this many pixels wide


@dataclasses.dataclass
class HealthThresholds:
    """Where a camera or the model goes WARN. Defaults: `scripts/fit_health_thresholds.py`."""

    # fitted by scripts/fit_health_thresholds.py: camera figures on 593 normal frames (CamVid
    # train + val, the KITTI grey sequence, the dash-cam video), the shipped model's calibrated
    # confidence on CamVid val and its classes on CamVid train; each the most extreme normal value with a margin
    black_p99: float = 48.5
    saturated_share: float = 0.667
    frozen_frames: int = 15
    frozen_s: float = 2.0
    frozen_diff: float = 0.25
    noise_sigma: float = 31.0
    blur_sharpness: float = 4.63
    event_hold_frames: int = 30
    window: int = 5
    low_confidence: float = 0.5
    min_mean_confidence: float = 0.835
    max_low_confidence_share: float = 0.126
    max_class_distance: float = 0.569
    min_road_share: float = 0.0587
    # class shares of the shipped model's masks on CamVid train; None = no distance check
    class_prior: Optional[list[float]] = dataclasses.field(
        default_factory=lambda: [0.1702, 0.2363, 0.0212, 0.3163, 0.0471, 0.1058, 0.0175, 0.0122, 0.0615, 0.0074, 0.0046]
    )

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        for name in ("black_p99", "frozen_diff", "noise_sigma", "blur_sharpness"):
            if not 0.0 <= float(getattr(self, name)) <= 255.0:
                raise ValueError(f"health threshold {name} must lie in 0..255, got {getattr(self, name)}")
        for name in (
            "saturated_share",
            "low_confidence",
            "min_mean_confidence",
            "max_low_confidence_share",
            "max_class_distance",
            "min_road_share",
        ):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"health threshold {name} must lie in 0..1, got {getattr(self, name)}")
        for name in ("frozen_frames", "event_hold_frames", "window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"health threshold {name} must be at least 1, got {getattr(self, name)}")
        if float(self.frozen_s) <= 0:
            raise ValueError(f"health threshold frozen_s must be positive, got {self.frozen_s}")


def analysis_grey(rgb: np.ndarray) -> np.ndarray:
    """An H x W (x C) uint8 frame -> its luma, ANALYSIS_WIDTH wide, nearest-neighbour (no averaging,
    so the per-pixel noise survives the reduction), as float32."""
    import cv2

    frame = np.asarray(rgb)
    step = max(1, frame.shape[1] // ANALYSIS_WIDTH)  # nearest-neighbour already: decimate first
    frame = frame[::step, ::step]
    if frame.ndim == 3 and frame.shape[2] >= 3:
        grey = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    elif frame.ndim == 3:
        grey = frame[..., 0]
    else:
        grey = frame
    if grey.dtype != np.uint8:
        grey = (grey.astype(np.float32) / max(1.0, float(np.iinfo(grey.dtype).max) / 255.0)).astype(np.uint8)
    h, w = grey.shape
    if w > ANALYSIS_WIDTH:
        grey = cv2.resize(
            grey, (ANALYSIS_WIDTH, max(1, round(h * ANALYSIS_WIDTH / w))), interpolation=cv2.INTER_NEAREST
        )
    return grey.astype(np.float32)


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_LAPLACE = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)


def image_figures(grey: np.ndarray) -> dict[str, float]:
    """Luma percentiles, saturated share, noise sigma and sharpness of an analysis_grey image."""
    import cv2

    # the luma figures from the 256-bin histogram (the grey levels are whole numbers): a sort of
    # the pixels would cost more than everything else here together
    hist = np.bincount(grey.astype(np.uint8).ravel(), minlength=256)
    cum = np.cumsum(hist)
    n = max(1, int(cum[-1]))
    p1, p99 = int(np.searchsorted(cum, 0.01 * n)), int(np.searchsorted(cum, 0.99 * n))
    inner = (slice(1, -1), slice(1, -1))
    if min(grey.shape) >= 3:
        # Immerkaer (1996): sigma = sqrt(pi / 2) / (6 (W - 2)(H - 2)) * sum |I * N|
        noise = float(np.sqrt(np.pi / 2.0) / 6.0 * np.abs(cv2.filter2D(grey, -1, _IMMERKAER)[inner]).mean())
        sharp = float(np.abs(cv2.filter2D(grey, -1, _LAPLACE)[inner]).mean())
    else:
        noise = sharp = 0.0
    return {
        "luma_mean": float((hist * np.arange(256)).sum() / n),
        "luma_p1": float(p1),
        "luma_p99": float(p99),
        "saturated_share": float(hist[CLIP_LEVEL:].sum() / n),
        "noise_sigma": noise,
        "sharpness": sharp,
    }


def model_figures(
    confidence: Optional[np.ndarray], mask: Optional[np.ndarray], num_classes: int, low_confidence: float
) -> dict[str, Any]:
    """Mean calibrated confidence, share of low-confidence pixels, class shares of one frame."""
    out: dict[str, Any] = {}
    shape = np.shape(confidence if confidence is not None else mask)
    s = max(1, shape[1] // MODEL_SAMPLE_WIDTH) if len(shape) == 2 else 1
    if confidence is not None:
        conf = np.asarray(confidence)[::s, ::s].astype(np.float32) / 255.0
        out["mean_confidence"] = float(conf.mean())
        out["low_confidence_share"] = float((conf < low_confidence).mean())
    if mask is not None and num_classes > 0:
        m = np.asarray(mask)[::s, ::s].reshape(-1)
        counts = np.bincount(m[m < num_classes], minlength=num_classes)[:num_classes].astype(np.float64)
        out["class_shares"] = counts / max(1.0, float(m.size))
    return out


class HealthMonitor:
    """The health of one camera's stream, updated frame by frame (not thread-safe: one caller)."""

    def __init__(
        self,
        camera: str,
        thresholds: Optional[HealthThresholds] = None,
        class_names: Sequence[str] = (),
    ) -> None:
        self.camera = camera
        self.t = thresholds or HealthThresholds()
        self.t.validate()
        self.class_names = list(class_names)
        lower = [n.lower() for n in self.class_names]
        self.road = lower.index("road") if "road" in lower else None
        self.frames = 0
        self._prev: Optional[np.ndarray] = None
        self._frozen_count = 0
        self._frozen_since: Optional[float] = None
        self._last_stamp: Optional[float] = None
        self._format: Optional[tuple] = None
        self._events: dict[str, tuple[int, str, dict]] = {}  # reason -> (frames left, message, figures)
        self._image: dict[str, float] = {}
        self._model: deque = deque(maxlen=int(self.t.window))
        self._problems: list[tuple[str, str]] = []
        self.values: dict[str, Any] = {}

    # ------------------------------------------------------------------ input
    def update(
        self,
        rgb: np.ndarray,
        stamp_s: Optional[float] = None,
        encoding: str = "",
        confidence: Optional[np.ndarray] = None,
        mask: Optional[np.ndarray] = None,
    ) -> None:
        """One frame: the decoded image, its stamp in seconds, the message's encoding, and the
        model's calibrated confidence map (uint8, probability * 255) and mask when there are."""
        self.frames += 1
        grey = analysis_grey(rgb)
        self._image = image_figures(grey)
        self._track_format(tuple(np.shape(rgb)[:2]), encoding)
        self._track_stamp(stamp_s)
        self._track_frozen(grey, stamp_s)
        frame_model = None
        if confidence is not None or mask is not None:
            frame_model = model_figures(confidence, mask, len(self.class_names), self.t.low_confidence)
        for reason in list(self._events):
            left, message, figures = self._events[reason]
            if left <= 1:
                del self._events[reason]
            else:
                self._events[reason] = (left - 1, message, figures)
        self._evaluate(frame_model)

    def _event(self, reason: str, message: str, figures: dict) -> None:
        self._events[reason] = (int(self.t.event_hold_frames) + 1, message, figures)

    def _track_format(self, shape: tuple, encoding: str) -> None:
        fmt = (shape, encoding)
        if self._format is not None and fmt != self._format:
            (h0, w0), e0 = self._format
            (h1, w1), e1 = fmt
            changes = []
            if (h0, w0) != (h1, w1):
                changes.append(f"resolution {w0}x{h0} -> {w1}x{h1}")
            if e0 != e1:
                changes.append(f"encoding {e0 or '?'} -> {e1 or '?'}")
            self._event("format change", "changed mid-stream: " + ", ".join(changes), {"width": w1, "height": h1})
        self._format = fmt

    def _track_stamp(self, stamp_s: Optional[float]) -> None:
        if stamp_s is None:
            return
        if self._last_stamp is not None and stamp_s < self._last_stamp:
            back = self._last_stamp - stamp_s
            self._event(
                "time backwards",
                f"timestamp went back {back:.3f} s ({self._last_stamp:.3f} -> {stamp_s:.3f})",
                {"stamp_jump_s": -back},
            )
        self._last_stamp = stamp_s if self._last_stamp is None else max(self._last_stamp, stamp_s)

    def _track_frozen(self, grey: np.ndarray, stamp_s: Optional[float]) -> None:
        prev, self._prev = self._prev, grey
        if prev is None or prev.shape != grey.shape:
            self._frozen_count, self._frozen_since = 0, None
            return
        diff = float(np.abs(grey - prev).mean())
        self._image["frame_difference"] = diff
        if diff <= self.t.frozen_diff:
            self._frozen_count += 1
            if self._frozen_since is None:
                self._frozen_since = stamp_s
        else:
            self._frozen_count, self._frozen_since = 0, None

    # ------------------------------------------------------------------ verdict
    def _evaluate(self, frame_model: Optional[dict]) -> None:
        t, f = self.t, self._image
        problems: list[tuple[str, str]] = []
        dark = f["luma_p99"] < t.black_p99
        bright = f["saturated_share"] > t.saturated_share
        if dark:
            problems.append(
                (
                    "black",
                    f"black frames: 99% of the pixels darker than {f['luma_p99']:.0f}/255 (threshold {t.black_p99:g})",
                )
            )
        if bright:
            problems.append(
                (
                    "saturated",
                    f"saturated frames: {f['saturated_share']:.0%} of the pixels at "
                    f"{CLIP_LEVEL}+ (threshold {t.saturated_share:.0%})",
                )
            )
        frozen_s = None
        if self._frozen_since is not None and self._last_stamp is not None:
            frozen_s = self._last_stamp - self._frozen_since
        if self._frozen_count >= t.frozen_frames or (
            frozen_s is not None and self._frozen_count and frozen_s >= t.frozen_s
        ):
            span = f", {frozen_s:.1f} s" if frozen_s is not None else ""
            problems.append(("frozen", f"frozen: {self._frozen_count + 1} identical frames in a row{span}"))
        if not (dark or bright):
            if f["noise_sigma"] > t.noise_sigma:
                problems.append(
                    ("noise", f"heavy noise: sigma {f['noise_sigma']:.1f} grey levels (threshold {t.noise_sigma:g})")
                )
            elif f["sharpness"] < t.blur_sharpness:
                problems.append(("blur", f"blurred: sharpness {f['sharpness']:.2f} (threshold {t.blur_sharpness:g})"))
        for reason, (_, message, _) in sorted(self._events.items()):
            problems.append((reason, message))
        camera_bad = bool(problems)
        # the model's figures mean nothing on a black or frozen camera: they are judged only on
        # frames the camera checks pass, and a fault empties the window
        if camera_bad:
            self._model.clear()
        elif frame_model is not None:
            self._model.append(frame_model)
        model = self._model_summary()
        if model and not camera_bad:
            if "mean_confidence" in model and model["mean_confidence"] < t.min_mean_confidence:
                problems.append(
                    (
                        "low confidence",
                        f"model unsure: mean confidence {model['mean_confidence']:.2f} "
                        f"(threshold {t.min_mean_confidence:g})",
                    )
                )
            elif "low_confidence_share" in model and model["low_confidence_share"] > t.max_low_confidence_share:
                problems.append(
                    (
                        "low confidence",
                        f"model unsure: {model['low_confidence_share']:.0%} of the pixels "
                        f"below {t.low_confidence:g} confidence "
                        f"(threshold {t.max_low_confidence_share:.0%})",
                    )
                )
            if "class_distance" in model and model["class_distance"] > t.max_class_distance:
                problems.append(
                    (
                        "unusual scene",
                        f"unusual scene: class distribution {model['class_distance']:.2f} "
                        f"from the training footage's (threshold {t.max_class_distance:g})",
                    )
                )
            elif "road_share" in model and model["road_share"] < t.min_road_share:
                problems.append(
                    ("no road", f"no road: {model['road_share']:.1%} of the pixels (threshold {t.min_road_share:.1%})")
                )
        self._problems = problems
        values: dict[str, Any] = {"frames": self.frames, **{k: round(v, 4) for k, v in f.items()}}
        values["frozen_frames"] = self._frozen_count
        for k, v in model.items():
            values[k] = round(v, 4)
        if self._format is not None:
            (h, w), enc = self._format
            values["resolution"] = f"{w}x{h}"
            values["encoding"] = enc
        self.values = values

    def _model_summary(self) -> dict[str, float]:
        if not self._model:
            return {}
        out: dict[str, float] = {}
        for key in ("mean_confidence", "low_confidence_share"):
            vals = [m[key] for m in self._model if key in m]
            if vals:
                out[key] = float(np.mean(vals))
        shares = [m["class_shares"] for m in self._model if "class_shares" in m]
        if shares:
            mean = np.mean(shares, axis=0)
            if self.t.class_prior is not None and len(self.t.class_prior) == len(mean):
                prior = np.asarray(self.t.class_prior, np.float64)
                out["class_distance"] = float(0.5 * np.abs(mean / max(mean.sum(), 1e-9) - prior).sum())
            if self.road is not None:
                out["road_share"] = float(mean[self.road])
        return out

    @property
    def reasons(self) -> list[str]:
        """The short names of the problems now ('black', 'frozen', ...); empty when OK."""
        return [r for r, _ in self._problems]

    def status(self) -> tuple[str, str, dict[str, Any]]:
        """(OK or WARN, the message, the figures as key-values)."""
        if self.frames == 0:
            return OK, "no frames yet", {}
        if self._problems:
            return WARN, "; ".join(m for _, m in self._problems), dict(self.values)
        return OK, "camera and model look normal", dict(self.values)
