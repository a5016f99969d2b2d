"""Test-time augmentation: a frame segmented at several network input scales, plain and mirrored,
with the logits averaged at the frame's own resolution before the argmax.

    tta = TestTimeAugmentation(segmenter, scales=(0.75, 1.0, 1.25), flip=True)
    res = tta.segment(frame, "rgb8", confidence=True)

It costs one network pass per scale and mirror (six for the default), so it is an option of the
offline tools (`bevanet-eval --tta`, `bevanet-predict --tta`); the node stays single-pass. Each
pass is read back to the frame exactly as the segmenter reads its own (the same resize plan and
post-processor), so with `scales=(1.0,)` and no flip the masks are the segmenter's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..evaluation.confidence_curve import curve_table
from ..imaging.encodings import Frame, check_frame
from ..imaging.geometry import NETWORK_STRIDE, plan_resize
from ..imaging.processing import Postprocessor, preprocess
from ..options import logits_align_corners
from .segmenter import SegmentationResult, Segmenter, _as_tensor

DEFAULT_TTA_SCALES = (0.75, 1.0, 1.25)


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> (0.75, 1.0, 1.25); each scale in (0, 4]."""
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"TTA scales must be numbers separated by commas, got {text!r}") from None
    if not scales or any(not 0.0 < s <= 4.0 for s in scales):
        raise ValueError(f"TTA scales must be in (0, 4], got {text!r}")
    return scales


class TestTimeAugmentation:
    """Wraps a Segmenter; `segment` has the segmenter's signature, so evaluation and prediction take
    either. Scales other than 1 need a backend that takes any input size (torch, or an ONNX model
    exported with dynamic axes); a fixed-size engine is refused here, not at the first frame."""

    __test__ = False  # not a pytest class

    def __init__(self, segmenter: Segmenter, scales: Sequence[float] = DEFAULT_TTA_SCALES, flip: bool = True):
        self.segmenter = segmenter
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        fixed = segmenter.backend.static_input_size
        if fixed is not None and any(s != 1.0 for s in self.scales):
            raise ValueError(
                f"test-time scales {self.scales} need a backend that takes any input size; this "
                f"{segmenter.config.backend} model has a fixed input of {fixed[0]}x{fixed[1]} "
                "(use the .safetensors weights with the torch backend, or scales of 1)"
            )
        w, h = segmenter.input_size
        self.sizes = [(_round8(w * s), _round8(h * s)) for s in self.scales]
        self._post = Postprocessor(
            "logits",
            align_corners=logits_align_corners(segmenter.info.variant),
            temperature=float(getattr(segmenter, "temperature", 1.0)),
            confidence_table=curve_table(getattr(segmenter, "confidence_curve", None)),
        )

    @property
    def info(self):
        return self.segmenter.info

    @property
    def input_size(self):
        return self.segmenter.input_size

    @property
    def temperature(self) -> float:
        return float(getattr(self.segmenter, "temperature", 1.0))

    @property
    def confidence_curve(self):
        return getattr(self.segmenter, "confidence_curve", None)

    @property
    def passes(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)

    def describe(self) -> str:
        sizes = ", ".join(f"{w}x{h}" for w, h in self.sizes)
        mirrored = ", each also mirrored" if self.flip else ""
        return f"test-time augmentation: {self.passes} passes (inputs {sizes}{mirrored})"

    @torch.inference_mode()
    def logits(self, frame: Frame, encoding: str = "rgb8") -> torch.Tensor:
        """C x H x W logits at the frame's resolution, averaged over the passes."""
        seg = self.segmenter
        frame, encoding = check_frame(frame, encoding)
        tensor = _as_tensor(frame)
        height, width = int(tensor.shape[0]), int(tensor.shape[1])
        total = None
        for size in self.sizes:
            plan = plan_resize((width, height), size, seg.config.resize)
            x = preprocess(
                [(tensor, encoding)],
                [plan],
                seg.info.mean,
                seg.info.std,
                seg.backend.device,
                seg.backend.input_dtype,
                antialias=seg.config.antialias,
            )
            # the mirrored pass mirrors the network input and its logits back, so that every
            # encoding (Bayer and YUV included) and every placement (letterbox) reads back alike
            if not self.flip:
                out = seg.backend.infer(x).float()
            elif seg.backend.max_batch is None or seg.backend.max_batch >= 2:
                both = seg.backend.infer(torch.cat([x, x.flip(-1)])).float()
                out = both[:1] + both[1:].flip(-1)
            else:
                out = seg.backend.infer(x).float() + seg.backend.infer(x.flip(-1).contiguous()).float().flip(-1)
            part = self._post.upsample_logits(out, plan)[0]
            total = part if total is None else total + part
        return total / self.passes

    def segment(
        self,
        frame: Frame,
        encoding: str = "rgb8",
        confidence: bool = False,
        color: bool = False,
        logits: bool = False,
    ) -> SegmentationResult:
        """As Segmenter.segment; `logits` keeps the averaged logits, already at the frame's resolution."""
        t0 = time.perf_counter()
        averaged = self.logits(frame, encoding)
        top, labels = averaged.max(dim=0)
        mask = labels.to(torch.uint8).cpu().numpy()
        conf = None
        if confidence:  # calibrated as the segmenter's: max softmax(logits / T), then its curve
            conf = self._post.confidence(top[None], averaged[None])[0].cpu().numpy()
        col = self.segmenter.colorize(mask) if color else None
        result = SegmentationResult(mask=mask, confidence=conf, color=col, logits=averaged.cpu() if logits else None)
        result.timings = {"total": (time.perf_counter() - t0) * 1e3}
        return result

    def frame_logits(self, logits: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The logits of `segment(..., logits=True)`: at the frame's resolution already."""
        if tuple(logits.shape[-2:]) != (int(height), int(width)):
            raise ValueError(f"logits of {tuple(logits.shape[-2:])} are not of a {width}x{height} frame")
        return logits

    def overlay(self, rgb, mask, alpha: float = 0.5):
        return self.segmenter.overlay(rgb, mask, alpha)

    def colorize(self, mask):
        return self.segmenter.colorize(mask)

    def close(self) -> None:
        self.segmenter.close()


def _round8(x: float) -> int:
    return max(NETWORK_STRIDE, int(round(x / NETWORK_STRIDE)) * NETWORK_STRIDE)
