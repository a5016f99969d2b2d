"""Fast inference runtime: frame(s) in, label mask(s) at the input resolution out.

from bevanet_core.runtime import Segmenter, SegmenterConfig
seg = Segmenter(SegmenterConfig(backend="onnxruntime", resize="letterbox"))
mask = seg.segment(frame, encoding="bgr8").mask
"""

from ..imaging.encodings import ENCODINGS, canonical_encoding
from ..imaging.geometry import RESIZE_MODES, ResizePlan, parse_size, plan_resize
from .segmenter import BACKENDS, SegmentationResult, Segmenter, SegmenterConfig

__all__ = [
    "Segmenter",
    "SegmenterConfig",
    "SegmentationResult",
    "BACKENDS",
    "ENCODINGS",
    "RESIZE_MODES",
    "ResizePlan",
    "canonical_encoding",
    "parse_size",
    "plan_resize",
]
