"""Training and evaluation transforms (the PIDNet/BEVANet recipe), on numpy arrays.

Every random choice takes an explicit `np.random.Generator`, so that a sample's augmentation
depends only on (seed, epoch, index): a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import torch

from .classes import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32 tensor, (x/255 - mean) / std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return x.sub_(m).div_(s)


def resize_long_side(image: np.ndarray, label: Optional[np.ndarray], long_size: int):
    """Scales so the longer side equals long_size: bilinear image, nearest label."""
    h, w = image.shape[:2]
    if h > w:
        new_h, new_w = long_size, int(w * long_size / h + 0.5)
    else:
        new_w, new_h = long_size, int(h * long_size / w + 0.5)
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    return image, label


def pad_to(image: np.ndarray, label: np.ndarray, size_hw: tuple[int, int], ignore_index: int = IGNORE_INDEX):
    """Pads bottom/right up to size (image with 0, label with ignore_index)."""
    h, w = image.shape[:2]
    ph, pw = max(size_hw[0] - h, 0), max(size_hw[1] - w, 0)
    if ph or pw:
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore_index)
    return image, label


def boundary_target(label: np.ndarray, dilate: int = 4, border: int = 0) -> np.ndarray:
    """Binary boundary map of a label map: Canny (0.1, 0.2, aperture 3), optional zeroed border,
    dilated with a dilate x dilate kernel (as PIDNet)."""
    edge = cv2.Canny(label, 0.1, 0.2)
    if border > 0:
        edge[:border, :] = 0
        edge[-border:, :] = 0
        edge[:, :border] = 0
        edge[:, -border:] = 0
    edge = cv2.dilate(edge, np.ones((dilate, dilate), np.uint8), iterations=1)
    return (edge > 50).astype(np.float32)


# --------------------------------------------------------------------------- photometric

PHOTOMETRIC_MODES = ("none", "distortion", "jitter", "camera")


def _blend(image: np.ndarray, alpha: float, beta) -> np.ndarray:
    """clip(image * alpha + beta) as uint8 (beta a scalar or a broadcastable array)."""
    return np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast: tuple[float, float] = (0.5, 1.5),
    saturation: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on an HxWx3 uint8 RGB image (BiSeNetV2, BSSNet and
    Light-Ham recipes): brightness, contrast before or after the HSV steps, saturation and hue,
    each applied with probability 0.5."""

    def maybe() -> bool:
        return bool(rng.integers(2))

    if maybe():
        image = _blend(image, 1.0, rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and maybe():
        image = _blend(image, rng.uniform(*contrast), 0.0)
    if maybe():
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _blend(hsv[..., 1], rng.uniform(*saturation), 0.0)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if maybe():
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hue = hsv[..., 0].astype(np.int32) + int(rng.integers(-hue_delta, hue_delta))
        hsv[..., 0] = (hue % 180).astype(np.uint8)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and maybe():
        image = _blend(image, rng.uniform(*contrast), 0.0)
    return image


def color_jitter(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.5, contrast: float = 0.5, saturation: float = 0.5
) -> np.ndarray:
    """STDC-Seg's ColorJitter (PIL ImageEnhance semantics) on an HxWx3 uint8 RGB image: each
    factor uniform in [1 - x, 1 + x], applied in the order brightness, contrast, saturation."""
    image = _blend(image, rng.uniform(max(0.0, 1 - brightness), 1 + brightness), 0.0)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    r = rng.uniform(max(0.0, 1 - contrast), 1 + contrast)  # blend with the mean grey level
    image = _blend(image, r, (1 - r) * float(int(gray.mean() + 0.5)))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    r = rng.uniform(max(0.0, 1 - saturation), 1 + saturation)  # blend with the grey image
    return _blend(image, r, (1 - r) * gray)


@dataclass(frozen=True)
class CameraAugment:
    """What other cameras and skies do to a training image, for a model that must work beyond
    its training footage (CamVid: overcast, blown-out white skies, one colour camera).

    Each step is taken with its own probability, in this order: brightness and contrast; a
    colour cast (an independent gain per channel, log-uniform: turns a white or grey sky blue,
    or yellow, as white balance and weather do); saturation and hue in HSV; conversion to
    grey (mono8 cameras reach the model as three equal channels); Gaussian blur (focus, motion);
    Gaussian noise (sensor noise at high gain).
    """

    p_light: float = 0.5
    brightness: tuple[float, float] = (0.6, 1.4)  # factor
    contrast: tuple[float, float] = (0.7, 1.3)  # factor about the mean grey level
    p_cast: float = 0.5
    cast: float = 0.35  # each channel's gain is exp(U(-cast, cast))
    p_hsv: float = 0.5
    saturation: tuple[float, float] = (0.5, 2.0)
    hue_delta: int = 18  # OpenCV hue units (180 = a full turn): +-36 degrees
    p_gray: float = 0.1
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    p_noise: float = 0.1
    noise_sigma: tuple[float, float] = (2.0, 8.0)  # grey levels

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32)
        if rng.random() < self.p_light:
            b, c = rng.uniform(*self.brightness), rng.uniform(*self.contrast)
            x = (x * b - x.mean() * b) * c + x.mean() * b
        if rng.random() < self.p_cast:
            x = x * np.exp(rng.uniform(-self.cast, self.cast, size=3)).astype(np.float32)
        image = np.clip(x, 0, 255).astype(np.uint8)
        if rng.random() < self.p_hsv:
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            hsv[..., 1] = _blend(hsv[..., 1], rng.uniform(*self.saturation), 0.0)
            hue = hsv[..., 0].astype(np.int32) + int(rng.integers(-self.hue_delta, self.hue_delta + 1))
            hsv[..., 0] = (hue % 180).astype(np.uint8)
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if rng.random() < self.p_gray:
            image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if rng.random() < self.p_blur:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*self.blur_sigma))
        if rng.random() < self.p_noise:
            noise = rng.normal(0.0, rng.uniform(*self.noise_sigma), size=image.shape).astype(np.float32)
            image = _blend(image, 1.0, noise)
        return image


GEOMETRIC_MODES = ("none", "mount")


@dataclass(frozen=True)
class MountAugment:
    """What another camera mount does to the view: the camera rolled a few degrees, and pitched or
    mounted higher or lower (a perspective warp that moves the horizon and tilts the road). Each step
    is taken with its own probability; pixels that the warp brings in from outside the frame are
    black in the image and ignored in the label."""

    p_roll: float = 0.5
    roll_deg: float = 6.0  # rotation about the image centre, uniform in [-roll, roll]
    p_pitch: float = 0.5
    pitch: float = 0.08  # the top and bottom edges move by up to this share of the height, opposite ways
    p_keystone: float = 0.3
    keystone: float = 0.06  # the top edge narrows or widens by up to this share of the width

    @staticmethod
    def matrix(w: int, h: int, roll_deg: float, pitch: float, keystone: float) -> np.ndarray:
        """The 3x3 warp of one mount: `pitch` moves the top edge by that share of the height (the
        bottom edge half as far the other way), `keystone` narrows the top edge by that share of the
        width on each side, then the view is rolled by `roll_deg` about the image centre."""
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = src.copy()
        dst[:2, 1] += pitch * h
        dst[2:, 1] -= pitch * h * 0.5
        dst[0, 0] += keystone * w
        dst[1, 0] -= keystone * w
        roll = cv2.getRotationMatrix2D((w / 2, h / 2), roll_deg, 1.0)
        return np.vstack([roll, [0, 0, 1]]) @ cv2.getPerspectiveTransform(src, dst)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator, ignore_index: int):
        h, w = label.shape
        pitch = rng.uniform(-self.pitch, self.pitch) if rng.random() < self.p_pitch else 0.0
        keystone = rng.uniform(-self.keystone, self.keystone) if rng.random() < self.p_keystone else 0.0
        roll = float(rng.uniform(-self.roll_deg, self.roll_deg)) if rng.random() < self.p_roll else 0.0
        matrix = self.matrix(w, h, roll, pitch, keystone)
        if np.allclose(matrix, np.eye(3)):
            return image, label
        image = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        label = cv2.warpPerspective(label, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=ignore_index)
        return image, label


@dataclass
class TrainTransform:
    """Optional camera-mount warp, random scale of the base long side, pad, random crop, flip,
    optional photometric augmentation, normalise, boundary target."""

    base_size: int
    crop_size: tuple[int, int]  # (width, height)
    scale_min: float = 0.5
    scale_max: float = 2.1
    scale_step: float = 0.1
    flip: bool = True
    edge_border: int = 0
    mean: Sequence[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: Sequence[float] = field(default_factory=lambda: list(IMAGENET_STD))
    ignore_index: int = IGNORE_INDEX
    photometric: str = "none"  # see PHOTOMETRIC_MODES
    geometric: str = "none"  # see GEOMETRIC_MODES

    def __post_init__(self):
        if self.photometric not in PHOTOMETRIC_MODES:
            raise ValueError(f"data.photometric must be one of {PHOTOMETRIC_MODES}, got {self.photometric!r}")
        if self.geometric not in GEOMETRIC_MODES:
            raise ValueError(f"data.geometric must be one of {GEOMETRIC_MODES}, got {self.geometric!r}")

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        if self.geometric == "mount":
            image, label = MountAugment()(image, label, rng, self.ignore_index)
        steps = int(round((self.scale_max - self.scale_min) / self.scale_step))
        scale = self.scale_min + rng.integers(0, steps + 1) * self.scale_step
        image, label = resize_long_side(image, label, int(self.base_size * scale + 0.5))
        crop_w, crop_h = self.crop_size
        image, label = pad_to(image, label, (crop_h, crop_w), self.ignore_index)
        h, w = label.shape
        y = int(rng.integers(0, h - crop_h + 1))
        x = int(rng.integers(0, w - crop_w + 1))
        image = image[y : y + crop_h, x : x + crop_w]
        label = label[y : y + crop_h, x : x + crop_w]
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.photometric == "distortion":
            image = photometric_distortion(np.ascontiguousarray(image), rng)
        elif self.photometric == "jitter":
            image = color_jitter(np.ascontiguousarray(image), rng)
        elif self.photometric == "camera":
            image = CameraAugment()(np.ascontiguousarray(image), rng)
        label = np.ascontiguousarray(label)
        edge = boundary_target(label, border=self.edge_border)
        return (normalize(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64)), torch.from_numpy(edge))


@dataclass
class EvalTransform:
    """Full image, single scale: normalise only (the model pads to a multiple of 8 itself)."""

    mean: Sequence[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: Sequence[float] = field(default_factory=lambda: list(IMAGENET_STD))

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: Optional[np.random.Generator] = None):
        return normalize(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64))
