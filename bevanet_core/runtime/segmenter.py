"""One segmenter API over the PyTorch, ONNX Runtime, OpenVINO and TensorRT backends.

from bevanet_core.runtime import Segmenter, SegmenterConfig
seg = Segmenter(SegmenterConfig(weights="model.safetensors", backend="onnxruntime"))
res = seg.segment(frame, encoding="bgr8", confidence=True, color=True)
res.mask  # H x W uint8 class ids at the frame's resolution, 255 = unlabeled
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn

from ..imaging.encodings import Frame, check_frame
from ..imaging.geometry import (
    NETWORK_STRIDE,
    RESIZE_MODES,
    ResizePlan,
    Size,
    parse_size,
    plan_resize,
    resolve_input_size,
)
from ..imaging.lru import LRUCache
from ..imaging.processing import UPSAMPLE_MODES, Postprocessor, palette_tensor, preprocess
from ..options import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_DEVICE,
    DEFAULT_PRECISION,
    DEFAULT_RESIZE,
    DEFAULT_UPSAMPLE,
    logits_align_corners,
)
from .backend import PRECISIONS, Backend, load_checkpoint, resolve_device


@dataclasses.dataclass
class SegmenterConfig:
    """Everything that selects and tunes a segmenter.

    weights: `.safetensors`/`.pt` checkpoint, `.onnx` model, `.xml` OpenVINO IR, or
        `.engine`/`.plan` TensorRT engine; None = the shipped default model.
    input_size: network input (W, H) or 'WxH', multiples of 8; None = the weights' ModelInfo,
        else 480x360.
    upsample: 'logits' (bilinear logits at the frame resolution, then argmax) or 'labels'
        (argmax at 1/8, then nearest labels; cheaper, blockier).
    backend: 'auto' measures the backends that run here and keeps the fastest (runtime/auto.py);
        or one of 'torch', 'onnxruntime', 'openvino', 'tensorrt'.
    precision: auto | fp32 | bf16 | fp16 | int8. 'auto': an exported file's own precision; for
        a checkpoint, fp32 under an explicit backend, and under backend 'auto' the fastest
        pipeline that passes the accuracy guard (runtime/auto.py). A precision that contradicts
        an exported file is refused. fp16 and int8 on onnxruntime/openvino run the
        explicit-precision ONNX (fp16-typed, or int8 Q/DQ calibrated on `calibration_images`).
        After construction, `Segmenter.config.precision` is the precision that runs.
    """

    weights: Optional[str] = None
    variant: Optional[str] = None
    backend: str = DEFAULT_BACKEND
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    input_size: Optional[Union[Size, str]] = None
    resize: str = DEFAULT_RESIZE
    upsample: str = DEFAULT_UPSAMPLE
    antialias: bool = False
    max_batch: int = 8
    fold_bn: bool = True
    channels_last: Optional[bool] = None  # None = on CUDA
    cuda_graphs: Optional[bool] = None  # None = on CUDA
    compile: bool = False
    num_threads: Optional[int] = None  # CPU threads (None = hardware.default_threads(); torch's is process-wide)
    cache_dir: Optional[str] = None  # exported ONNX models and TensorRT engines
    calibration_images: Optional[str] = None  # folder of real frames for int8 calibration
    rebuild_stale_engine: bool = True  # False = refuse an engine built for another GPU/TensorRT
    allow_nonfinite: bool = False  # True = load weights holding NaN/inf (research only)

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.input_size is not None:
            self.input_size = parse_size(self.input_size, "input_size", NETWORK_STRIDE)


@dataclasses.dataclass
class SegmentationResult:
    """One frame's output, all at the frame's own resolution."""

    mask: np.ndarray  # H x W uint8 class ids, 255 = unlabeled
    confidence: Optional[np.ndarray] = None  # H x W uint8, max softmax * 255
    color: Optional[np.ndarray] = None  # H x W x 3 uint8 RGB
    logits: Optional[torch.Tensor] = None  # C x h x w float32 raw network logits (logits=True)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # ms, for the whole batch


class Segmenter:
    """Frame(s) in host memory -> label mask(s) in host memory, through one backend."""

    def __init__(
        self,
        config: Optional[SegmenterConfig] = None,
        *,
        model: Optional[nn.Module] = None,
        info=None,
        **fields,
    ):
        config = dataclasses.replace(config, **fields) if config is not None else SegmenterConfig(**fields)
        config.validate()
        if not config.num_threads:
            from ..hardware import default_threads

            config = dataclasses.replace(config, num_threads=default_threads())
        self.config = config
        self.device = resolve_device(config.device)
        if self.device.type == "cpu":
            # pre- and post-processing run in torch whichever backend infers: its pool is
            # process-wide, and one larger than the threads asked for oversubscribes the CPU
            torch.set_num_threads(int(config.num_threads))
        self.backend: Backend
        self.backend_choice: Optional[dict] = None  # backend='auto': what was chosen and why
        self.backend, self.info = self._build_backend(model, info)
        self.input_size: Size = resolve_input_size(config.input_size, self.info, self.backend.static_input_size)
        from ..evaluation.calibration import temperature_of
        from ..evaluation.confidence_curve import curve_of, curve_table

        # the published confidence is max softmax(logits / T) with the weights' fitted temperature,
        # through the monotone map fitted after it when the weights carry one
        self.temperature = temperature_of(self.info)
        self.confidence_curve = curve_of(self.info)
        self._post = Postprocessor(
            config.upsample,
            align_corners=logits_align_corners(self.info.variant),
            temperature=self.temperature,
            confidence_table=curve_table(self.confidence_curve),
        )
        self._lut = palette_tensor(self.info.palette, self.backend.device)
        self._np_lut = self._lut.cpu().numpy()
        self._plans: LRUCache[ResizePlan] = LRUCache()  # per frame size, bounded

    @classmethod
    def from_model(cls, model: nn.Module, info, **fields) -> Segmenter:
        """A segmenter over an in-memory model (e.g. a seeded one in tests) and its ModelInfo."""
        return cls(None, model=model, info=info, **fields)

    # ------------------------------------------------------------------ construction

    def _build_backend(self, model: Optional[nn.Module], info):
        cfg = self.config
        weights = Path(cfg.weights) if cfg.weights is not None else None
        if model is not None and info is None:
            raise ValueError("Segmenter.from_model needs the model's ModelInfo (info=...)")
        if weights is not None and not weights.is_file():
            raise ValueError(f"weights file not found: {weights}")
        if model is None:
            from .loading import resolve_precision

            cfg = self.config = dataclasses.replace(cfg, precision=resolve_precision(cfg.weights, cfg.precision))
        if cfg.precision == "auto" and (cfg.backend != "auto" or model is not None):
            # an explicit backend (or a model in memory) runs at full precision; only backend
            # 'auto' over a checkpoint weighs a quantized pipeline, under its accuracy guard
            cfg = self.config = dataclasses.replace(cfg, precision="fp32")
        if cfg.backend != "auto":
            return self._make_backend(cfg, model, info)
        from .auto import select_backend

        def build(name, precision, model, info):
            calibration = cfg.calibration_images
            if precision == "int8" and cfg.precision == "auto":
                from .int8_guard import calibration_folder

                calibration = str(calibration_folder(cfg))
            fields = dict(backend=name, precision=precision, calibration_images=calibration)
            return self._make_backend(dataclasses.replace(cfg, **fields), model, info)

        def size_of(backend, info):
            return resolve_input_size(cfg.input_size, info, backend.static_input_size)

        backend, info, self.backend_choice = select_backend(cfg, self.device, model, info, build, size_of)
        self.config = dataclasses.replace(cfg, precision=self.backend_choice.get("precision", cfg.precision))
        return backend, info

    def _make_backend(self, cfg: SegmenterConfig, model: Optional[nn.Module], info):
        weights = Path(cfg.weights) if cfg.weights is not None else None
        suffix = weights.suffix.lower() if weights is not None else ""
        if cfg.backend == "tensorrt":
            from .tensorrt_backend import TensorRTBackend

            return TensorRTBackend.create(cfg, self.device, model=model, info=info)
        if suffix in (".engine", ".plan", ".trt"):
            raise ValueError(f"{weights} is a TensorRT engine; use backend='tensorrt'")
        if suffix == ".xml" and cfg.backend != "openvino":
            raise ValueError(f"{weights} is an OpenVINO IR; use backend 'openvino' (or 'auto')")
        if cfg.backend == "onnxruntime":
            from .onnxruntime_backend import OnnxRuntimeBackend

            return OnnxRuntimeBackend.create(cfg, self.device, model=model, info=info)
        if cfg.backend == "openvino":
            from .openvino_backend import OpenVINOBackend

            return OpenVINOBackend.create(cfg, self.device, model=model, info=info)
        if suffix == ".onnx":
            raise ValueError(f"{weights} is an ONNX model; use backend 'onnxruntime', 'openvino' or 'tensorrt'")
        if model is None:
            model, info = load_checkpoint(cfg.weights, cfg.variant, cfg.allow_nonfinite)
        from .torch_backend import TorchBackend

        backend = TorchBackend(
            model,
            self.device,
            cfg.precision,
            fold_bn=cfg.fold_bn,
            channels_last=cfg.channels_last,
            cuda_graphs=cfg.cuda_graphs,
            compile=cfg.compile,
            num_threads=cfg.num_threads,
        )
        return backend, info

    # ------------------------------------------------------------------ inference

    def plan(self, width: int, height: int) -> ResizePlan:
        """The (cached) placement of a width x height frame into the network input."""
        key = (width, height)
        return self._plans.get_or_make(key, lambda: plan_resize(key, self.input_size, self.config.resize))

    def segment(
        self,
        frame: Frame,
        encoding: str = "rgb8",
        confidence: bool = False,
        color: bool = False,
        logits: bool = False,
    ) -> SegmentationResult:
        """Segments one HxW / HxWxC uint8 frame (`logits`: also keep the raw network logits)."""
        return self.segment_batch([frame], [encoding], confidence=confidence, color=color, logits=logits)[0]

    def segment_batch(
        self,
        frames: Sequence[Frame],
        encodings: Union[str, Sequence[str]] = "rgb8",
        confidence: bool = False,
        color: bool = False,
        logits: bool = False,
    ) -> list[SegmentationResult]:
        """Segments frames of any sizes (e.g. several cameras) in one inference per `max_batch`."""
        if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 4:
            frames = list(frames)
        if not isinstance(frames, (list, tuple)) or len(frames) == 0:
            raise ValueError("frames must be a non-empty list of HxW or HxWxC uint8 arrays")
        if isinstance(encodings, str):
            encodings = [encodings] * len(frames)
        if len(encodings) != len(frames):
            raise ValueError(f"got {len(frames)} frames but {len(encodings)} encodings")
        checked = [
            check_frame(f, e, i if len(frames) > 1 else None)
            for i, (f, e) in enumerate(zip(frames, encodings, strict=True))
        ]
        step = int(self.config.max_batch)
        if self.backend.max_batch is not None:
            step = min(step, self.backend.max_batch)
        results: list[SegmentationResult] = []
        for start in range(0, len(checked), step):
            results.extend(self._run(checked[start : start + step], confidence, color, logits))
        return results

    def frame_logits(self, logits: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """A result's C x h x w network logits -> C x height x width at the frame's pixels, placed
        exactly as the masks are (the frame's resize plan)."""
        plan = self.plan(int(width), int(height))
        return self._post.upsample_logits(logits[None].float(), plan)[0]

    def _run(self, checked, want_conf: bool, want_color: bool, want_logits: bool = False) -> list[SegmentationResult]:
        dev = self.backend.device
        sync = self.backend.synchronize
        t0 = time.perf_counter()
        tensors = [(_as_tensor(f), enc) for f, enc in checked]
        plans = [self.plan(int(t.shape[1]), int(t.shape[0])) for t, _ in tensors]
        x = preprocess(
            tensors,
            plans,
            self.info.mean,
            self.info.std,
            dev,
            self.backend.input_dtype,
            antialias=self.config.antialias,
        )
        sync()
        t1 = time.perf_counter()
        logits = self.backend.infer(x)
        sync()
        t2 = time.perf_counter()
        outputs = self._post(logits, plans, confidence=want_conf)
        results = []
        for j, (mask, conf) in enumerate(outputs):
            col = self._lut[mask.long()] if want_color else None
            results.append(
                SegmentationResult(
                    mask=mask.cpu().numpy(),
                    confidence=conf.cpu().numpy() if conf is not None else None,
                    color=col.cpu().numpy() if col is not None else None,
                    logits=logits[j].float().cpu() if want_logits else None,
                )
            )
        t3 = time.perf_counter()
        timings = {
            "preprocess": (t1 - t0) * 1e3,
            "inference": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        for r in results:
            r.timings = dict(timings)
        return results

    # ------------------------------------------------------------------ display helpers

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """H x W uint8 class ids -> H x W x 3 uint8 RGB (255 and unknown ids are black)."""
        mask = np.asarray(mask)
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise ValueError(f"mask must be an HxW uint8 array, got {mask.dtype} of shape {mask.shape}")
        return self._np_lut[mask]

    def overlay(self, rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Blends the colour mask over an HxWx3 uint8 RGB image; unlabeled pixels stay as is."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"overlay needs an HxWx3 uint8 RGB image, got {rgb.dtype} of shape {rgb.shape}")
        if rgb.shape[:2] != np.shape(mask):
            raise ValueError(f"image {rgb.shape[:2]} and mask {np.shape(mask)} sizes differ")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        blend = rgb.astype(np.float32) * (1.0 - alpha) + self.colorize(mask).astype(np.float32) * alpha
        out = np.where((np.asarray(mask) == 255)[..., None], rgb, np.rint(blend).astype(np.uint8))
        return out.astype(np.uint8)

    @property
    def pipeline(self) -> dict:
        """What runs, for reports and logs: the backend and precision actually used (after
        'auto'), the device, the CPU threads, the weights and the model file the backend loaded."""
        from ..checkpoint import DEFAULT_WEIGHTS

        loaded = getattr(self.backend, "path", None)
        return {
            "backend": self.backend.name,
            "precision": self.config.precision,
            "device": str(self.backend.device),
            "threads": self.config.num_threads,
            "weights": str(self.config.weights) if self.config.weights else str(DEFAULT_WEIGHTS),
            "model_file": str(loaded) if loaded is not None else None,
            "variant": self.info.variant,
            "input_size": list(self.input_size),
        }

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    def close(self) -> None:
        """Frees the backend (GPU memory, sessions, engines)."""
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_tensor(frame: Frame) -> torch.Tensor:
    """Zero-copy view of a numpy frame (read-only buffers, e.g. ROS messages, are only read)."""
    if isinstance(frame, torch.Tensor):
        return frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(frame))
