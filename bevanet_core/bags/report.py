"""Writing an evaluation report: JSON, a markdown summary, a plot, a montage and an overlay video.

Every file is written to a temporary name and renamed, so a crash never leaves half a report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from ..paths import atomic_write

PathLike = Union[str, Path]


def _clean(value: Any) -> Any:
    """JSON without NaN (as null) and with plain Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(report: dict, path: PathLike) -> Path:
    """The report as indented JSON (NaN written as null)."""
    text = json.dumps(_clean(report), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), tmp_suffix=Path(path).suffix)


def _fmt(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{unit}"


def markdown(report: dict) -> str:
    """A short human summary of the report."""
    lat = report.get("latency_ms") or {}
    lines = ["# Rosbag evaluation", ""]
    model = report.get("model") or {}
    if model:
        lines += [
            f"Model: `{model.get('variant')}` ({model.get('weights') or 'shipped default'}), "
            f"backend `{model.get('backend')}`, precision `{model.get('precision')}`, "
            f"{model.get('threads') or '?'} thread(s) on `{model.get('device')}` "
            f"(as {model.get('pipeline_from') or 'this process'} reports), "
            f"network input {model.get('input_size')}.",
            "",
        ]
    lines += [
        "| metric | value |",
        "|---|---|",
        f"| mIoU | {_fmt(report.get('miou'), 2, ' %')} |",
        f"| pixel accuracy | {_fmt(report.get('pixel_accuracy'), 2, ' %')} |",
        f"| frames | {report.get('frames')} |",
        f"| labelled frames | {report.get('labelled_frames')} |",
        f"| unpaired frames / labels | {report.get('unpaired')} / {report.get('unpaired_labels')} |",
        f"| dropped / undecodable frames | {report.get('dropped')} / {report.get('undecodable')} |",
        f"| latency p50 / p90 / p99 | {_fmt(lat.get('p50'), 1)} / {_fmt(lat.get('p90'), 1)} / "
        f"{_fmt(lat.get('p99'), 1)} ms |",
        f"| throughput | {_fmt(report.get('fps'), 1, ' fps')} |",
        "",
    ]
    if report.get("miou") is None:
        lines += [
            "No ground-truth labels were paired with the camera frames, so there is no mIoU "
            "(record labels on a label topic, or pass --root/--list).",
            "",
        ]
    per_class = report.get("per_class_iou")
    if per_class:
        lines += ["| class | IoU % |", "|---|---|"]
        lines += [f"| {name} | {_fmt(v)} |" for name, v in per_class.items()]
        lines.append("")
    bags = report.get("bags") or []
    if bags:
        lines += [
            "| bag | frames | labelled | unpaired | mIoU % | p50 ms | fps | camera Hz | errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for b in bags:
            bl = b.get("latency_ms") or {}
            lines.append(
                f"| `{Path(b['bag']).name}` | {b['frames']} | {b['labelled_frames']} | "
                f"{b['unpaired']} | "
                f"{_fmt(b.get('miou'))} | {_fmt(bl.get('p50'), 1)} | {_fmt(b.get('fps'), 1)} | "
                f"{_fmt(b.get('camera_rate_hz'), 1)} | {b['errors']} |"
            )
        lines.append("")
    errors = report.get("errors") or []
    if errors:
        lines += ["## Errors", ""]
        for e in errors:
            times = f" (x{e['count']})" if e.get("count", 1) > 1 else ""
            lines.append(f"- `{Path(e['bag']).name}` after {e['frames_before']} frames{times}: {e['error']}")
        lines.append("")
    return "\n".join(lines)


def write_markdown(report: dict, path: PathLike) -> Path:
    text = markdown(report)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), tmp_suffix=Path(path).suffix)


def _imwrite(path: str, rgb: np.ndarray) -> None:
    ext = Path(path).suffix or ".png"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV cannot write {ext} images ({path})")
    Path(path).write_bytes(buf.tobytes())


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_SCALE = 0.5
_BAR = (32, 32, 32)  # background of the header and the legend (RGB)
_INK = (240, 240, 240)


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, _FONT, _TEXT_SCALE, 1)[0][0]


@dataclasses.dataclass(frozen=True)
class Legend:
    """Class names and their display colours, drawn as a strip of swatches under an image."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, class_names: Sequence[str], colorize) -> Legend:
        """The legend of a model: its class names, coloured as `colorize` colours their ids."""
        ids = np.arange(len(class_names), dtype=np.uint8)[None, :]
        palette = np.asarray(colorize(ids)).reshape(-1, 3)
        return cls(tuple(class_names), tuple(tuple(int(v) for v in c) for c in palette))

    def strip(self, width: int) -> np.ndarray:
        """An RGB strip `width` pixels wide: one swatch and name per class, wrapped into lines."""
        swatch, gap, line_h, pad = 14, 14, 22, 8
        lines: list[list[tuple[int, str, tuple[int, int, int]]]] = [[]]
        x = pad
        for name, color in zip(self.names, self.colors, strict=True):
            item = swatch + 5 + _text_width(name)
            if lines[-1] and x + item > width - pad:
                lines.append([])
                x = pad
            lines[-1].append((x, name, color))
            x += item + gap
        image = np.full((len(lines) * line_h + pad, width, 3), _BAR, np.uint8)
        for row, items in enumerate(lines):
            y = pad // 2 + row * line_h + (line_h - swatch) // 2
            for x, name, color in items:
                cv2.rectangle(image, (x, y), (x + swatch - 1, y + swatch - 1), color, -1)
                cv2.rectangle(image, (x, y), (x + swatch - 1, y + swatch - 1), _INK, 1)
                cv2.putText(image, name, (x + swatch + 5, y + swatch - 2), _FONT, _TEXT_SCALE, _INK, 1, cv2.LINE_AA)
        return image

    def under(self, rgb: np.ndarray) -> np.ndarray:
        """`rgb` with the legend strip below it."""
        return np.concatenate([rgb, self.strip(rgb.shape[1])], axis=0)


def headers(titles: Sequence[str], tile_width: int) -> np.ndarray:
    """A row of column titles, one per `tile_width` column (RGB)."""
    image = np.full((26, tile_width * len(titles), 3), _BAR, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(image, title, (i * tile_width + 8, 18), _FONT, _TEXT_SCALE, _INK, 1, cv2.LINE_AA)
    return image


def montage(
    samples: Sequence[dict[str, Any]],
    colorize,
    class_names: Sequence[str] | None = None,
    tile_width: int = 480,
) -> np.ndarray | None:
    """Rows of [camera | overlay | ground truth] for the sampled frames (RGB uint8), under a row
    of column titles and above a colour legend of `class_names` (none when not given)."""
    rows: list[np.ndarray] = []
    with_gt = any(s.get("label") is not None for s in samples)
    for s in samples:
        h, w = s["rgb"].shape[:2]
        size = (tile_width, max(1, round(h * tile_width / w)))
        tiles = [s["rgb"], s["overlay"] if s.get("overlay") is not None else s["rgb"]]
        if with_gt:
            tiles.append(colorize(s["label"]) if s.get("label") is not None else np.zeros_like(s["rgb"]))
        tiles = [cv2.resize(t, size, interpolation=cv2.INTER_AREA if t.ndim == 3 else cv2.INTER_NEAREST) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return None
    titles = ["camera", "prediction over the camera"] + (["ground truth"] if with_gt else [])
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    image = np.concatenate([headers(titles, tile_width)] + rows, axis=0)
    return Legend.of(class_names, colorize).under(image) if class_names else image


def write_montage(
    samples: Sequence[dict[str, Any]], colorize, path: PathLike, class_names: Sequence[str] | None = None
) -> Path | None:
    """The montage as PNG; None when no frame was sampled."""
    image = montage(samples, colorize, class_names)
    if image is None:
        return None
    return atomic_write(path, lambda tmp: _imwrite(tmp, image), tmp_suffix=Path(path).suffix)


def write_plot(report: dict, latencies_ms: Sequence[float], path: PathLike) -> Path:
    """Per-class IoU bars (when labelled) and the per-frame latency trace, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_class = report.get("per_class_iou")
    panels = 2 if per_class else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    if latencies_ms:
        ax.plot(np.arange(1, len(latencies_ms) + 1), latencies_ms, lw=1)
        lat = report.get("latency_ms") or {}
        for key, style in (("p50", "--"), ("p99", ":")):
            if lat.get(key) is not None:
                ax.axhline(lat[key], ls=style, color="k", lw=0.8, label=f"{key} {lat[key]:.1f} ms")
        ax.legend(loc="upper right")
    ax.set_xlabel("frame")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"latency, {report.get('frames')} frames, {_fmt(report.get('fps'), 1, ' fps')}")
    if per_class:
        ax = axes[0][1]
        names = list(per_class)
        vals = [per_class[n] if per_class[n] is not None else 0.0 for n in names]
        ax.barh(names, vals)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("IoU (%)")
        ax.set_title(f"mIoU {_fmt(report.get('miou'))} %")
    fig.tight_layout()

    def save(tmp: str) -> None:
        fig.savefig(tmp, dpi=100, format="png")

    try:
        return atomic_write(path, save, tmp_suffix=Path(path).suffix)
    finally:
        plt.close(fig)


class _PyAVWriter:
    """H.264 (libx264, yuv420p, +faststart) through PyAV: the MP4 that browsers play."""

    codec = "H.264 (libx264 via PyAV)"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        from fractions import Fraction

        import av

        if "libx264" not in av.codecs_available:
            raise ValueError("this PyAV build has no libx264 encoder")
        self._av = av
        w, h = size
        self._even = (w - w % 2, h - h % 2)  # yuv420p needs even sides
        self._out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._out.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self._even
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "23", "preset": "veryfast"}

    def write(self, rgb: np.ndarray) -> None:
        w, h = self._even
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def release(self) -> None:
        for packet in self._stream.encode():
            self._out.mux(packet)
        self._out.close()


class _OpenCVWriter:
    """MPEG-4 Part 2 ('mp4v') through OpenCV: what the pip OpenCV wheels can always write
    (they carry no H.264 encoder); VLC and ffmpeg play it, most browsers do not."""

    codec = "MPEG-4 Part 2 (OpenCV mp4v; install PyAV, extra 'video', for H.264)"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise ValueError(f"OpenCV cannot write an mp4v video to {path}")

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        self._writer.release()


def _video_writer(path: Path, fps: float, size: tuple[int, int]):
    """H.264 where PyAV with libx264 is installed, else OpenCV's mp4v (`.codec` says which)."""
    try:
        return _PyAVWriter(path, fps, size)
    except (ImportError, ValueError):
        return _OpenCVWriter(path, fps, size)


class VideoSink:
    """Overlay frames to an mp4, written to a temp name and renamed on close: H.264 when PyAV
    (with libx264) is installed, MPEG-4 Part 2 otherwise; `.codec` names the one used.

    Without an explicit fps the rate is taken from the first two frame stamps (the camera rate).
    With a `legend`, every frame carries the class colour legend below it.
    """

    def __init__(self, path: PathLike, fps: float | None = None, legend: Legend | None = None):
        self.legend = legend
        self._strip: np.ndarray | None = None
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise ValueError(f"video path {self.path} should end in .mp4")
        self.fps = float(fps) if fps else None
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer = None
        self._pending: tuple | None = None
        self._size = (0, 0)
        self.frames = 0
        self.codec: str | None = None

    def _open(self, first: np.ndarray, fps: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        h, w = first.shape[:2]
        self._size = (w, h)
        self._writer = _video_writer(self._tmp, fps, (w, h))
        self.codec = self._writer.codec

    def _put(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self._size:
            rgb = cv2.resize(rgb, self._size)
        self._writer.write(rgb)
        self.frames += 1

    def write(self, rgb: np.ndarray, stamp_ns: int | None = None) -> None:
        if self.legend is not None:
            if self._strip is None or self._strip.shape[1] != rgb.shape[1]:
                self._strip = self.legend.strip(rgb.shape[1])
            rgb = np.concatenate([rgb, self._strip], axis=0)
        if self._writer is None:
            if self.fps is None and self._pending is None:
                self._pending = (rgb.copy(), stamp_ns)
                return
            fps = self.fps
            if fps is None:
                prev = self._pending[1]
                dt = (stamp_ns - prev) / 1e9 if stamp_ns is not None and prev is not None else 0.0
                fps = 1.0 / dt if dt > 0 else 10.0
            self._open(self._pending[0] if self._pending else rgb, fps)
            if self._pending is not None:
                self._put(self._pending[0])
                self._pending = None
        self._put(rgb)

    def close(self) -> Path | None:
        """Finish the file; None when no frame was written."""
        if self._writer is None and self._pending is not None:
            self._open(self._pending[0], self.fps or 10.0)
            self._put(self._pending[0])
            self._pending = None
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp.exists():
            self._tmp.unlink()
