"""int8 out of the box: the frames that calibrate and check it, and the accuracy guard.

Backend 'auto' with precision 'auto' (the defaults) weighs int8 pipelines (ONNX Runtime,
OpenVINO, whichever is installed) beside the fp32 ones. The int8 ONNX is quantized once, on the
first start, from the calibration frames that ship with the package (`weights/int8_frames/`:
24 JPEG frames of the sample bag `bags/solid_white_right`, written by
`scripts/make_int8_frames.py`, under 600 kB with the check frames) or from
`SegmenterConfig.calibration_images` where given, and cached by the artifact cache. An int8
pipeline may only be chosen if its labels agree with the fp32 reference (PyTorch where it runs)
on at least MIN_AGREEMENT of the pixels of the 8 shipped check frames, none of which
calibrated it, and if its confidence (the max softmax, which the weights' calibration maps to a
probability) stays within MAX_CONFIDENCE_GAP of the reference's on average: quantization can
keep the labels while it stretches the logits, and a calibration fitted on the float network
would then publish wrong probabilities. Both are measured when the pipeline is built and cached
with the choice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..options import logits_align_corners
from .backend import Backend

INT8_FRAMES = Path(__file__).resolve().parents[1] / "weights" / "int8_frames"
MIN_AGREEMENT = 0.98
MAX_CONFIDENCE_GAP = 0.02  # mean |max softmax(int8) - max softmax(fp32)| over the check frames' pixels
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def frame_files(folder: Path) -> list[Path]:
    """The image files of a folder, sorted (empty when it is missing)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def calibration_folder(cfg) -> Optional[Path]:
    """The frames int8 is calibrated on: the configured folder, else the shipped ones."""
    if cfg.calibration_images:
        return Path(cfg.calibration_images)
    folder = INT8_FRAMES / "calibration"
    return folder if frame_files(folder) else None


def check_files() -> list[Path]:
    return frame_files(INT8_FRAMES / "check")


def frames_digest(cfg) -> str:
    """What the int8 decision depends on besides model and machine: the calibration and check
    frames (names and sizes)."""
    digest = hashlib.sha256()
    calib = calibration_folder(cfg)
    for f in frame_files(calib) if calib is not None else []:
        digest.update(f"c|{f.name}|{f.stat().st_size}\n".encode())
    for f in check_files():
        digest.update(f"k|{f.name}|{f.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def check_inputs(info, input_size: tuple[int, int], resize: str) -> torch.Tensor:
    """The shipped check frames as the network sees them: N x 3 x H x W, the runtime's own
    resize and normalisation."""
    from ..data.datasets import read_image
    from ..imaging.geometry import plan_resize
    from ..imaging.processing import preprocess

    tensors = []
    for f in check_files():
        rgb = read_image(f)
        plan = plan_resize((rgb.shape[1], rgb.shape[0]), tuple(input_size), resize)
        tensors.append(preprocess([(torch.from_numpy(rgb), "rgb8")], [plan], info.mean, info.std, torch.device("cpu")))
    if not tensors:
        raise ValueError(f"no check frames in {INT8_FRAMES / 'check'}")
    return torch.cat(tensors)


def labels_and_confidence(backend: Backend, x: torch.Tensor, align_corners: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel labels and max softmax at the network input size, one frame at a time
    (static-batch artifacts)."""
    labels, confidence = [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            logits = backend.infer(x[i : i + 1]).float()
            up = F.interpolate(logits, size=tuple(x.shape[2:]), mode="bilinear", align_corners=align_corners)
            top, label = torch.softmax(up, dim=1).max(dim=1)
            labels.append(label)
            confidence.append(top)
    return torch.cat(labels), torch.cat(confidence)


def compare(reference: Backend, candidate: Backend, x: torch.Tensor, variant) -> tuple[float, float]:
    """(the fraction of check-frame pixels on which `candidate` gives `reference`'s label, the mean
    absolute difference of their max softmax)."""
    corners = logits_align_corners(variant)
    ref_labels, ref_conf = labels_and_confidence(reference, x, corners)
    labels, conf = labels_and_confidence(candidate, x, corners)
    return float((ref_labels == labels).float().mean()), float((ref_conf - conf).abs().mean())
