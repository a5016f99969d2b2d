"""The runtime's choices by name, importable without torch: what the node's parameter spec, its
`--help` and the launch arguments list. The modules that implement them import these names from
here, so there is one definition of each (`test/test_models.py` checks the network names
against the registry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
# 'auto': the precision an exported file carries; for a checkpoint, the fastest one that passes
# the accuracy guard where backend 'auto' chooses (runtime/auto.py), else fp32
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
FIXED_PRECISIONS = PRECISIONS[1:]
RESIZE_MODES = ("stretch", "letterbox")
UPSAMPLE_MODES = ("logits", "labels")
# the registered segmentation networks (bevanet_core.models.SEGMENTATION_MODELS), sorted
SEGMENTATION_MODEL_NAMES = (
    "bevanet",
    "bevanet_s",
    "bisenetv2",
    "bssnet_b",
    "bssnet_t",
    "pidnet_l",
    "pidnet_m",
    "pidnet_s",
    "stdc1",
    "stdc2",
    "van_base_lightham",
    "van_large_lightham",
    "van_small_lightham",
    "van_tiny_lightham",
    "van_tiny_lightham_d256",
)
# The networks whose training objective upsamples the logits to the labels with
# align_corners=True (BEVANet, PIDNet and BSSNet, as their authors' code): their first and last
# logit cells sit on the first and last pixel centres. The others (BiSeNetV2, STDC-Seg,
# VAN + Light-Ham) train with align_corners=False, the cells spread evenly over the image.
# Inference reads the logits back the way they were trained (logits_align_corners): read the
# other way, a mask shifts by up to half a cell (4 pixels at 1/8) towards the image borders,
# the width of a pole.
CORNER_ALIGNED_MODEL_NAMES = ("bevanet", "bevanet_s", "bssnet_b", "bssnet_t", "pidnet_l", "pidnet_m", "pidnet_s")


def logits_align_corners(variant) -> bool:
    """How inference upsamples `variant`'s logits: as its training objective did (True: the
    corner cells on the corner pixel centres). False for names not registered."""
    return variant in CORNER_ALIGNED_MODEL_NAMES


# defaults of bevanet_core.runtime.SegmenterConfig that are also node parameters
DEFAULT_BACKEND = "auto"
DEFAULT_DEVICE = "cpu"
DEFAULT_PRECISION = "auto"
DEFAULT_RESIZE = "stretch"
DEFAULT_UPSAMPLE = "logits"


def parse_size(value: Union[str, Sequence[int]], name: str = "input_size", multiple: int = 1) -> tuple[int, int]:
    """'480x360', (480, 360) or [480, 360] -> (480, 360); checks positivity and the multiple.
    Every size a user types (tools, launch arguments, configs) goes through here, so each names
    the same rules in the same words."""
    if isinstance(value, str):
        parts = value.strip().lower().replace(",", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            size = ()
        if len(size) != 2:
            raise ValueError(f"{name} must look like WxH (e.g. 480x360), got {value!r}")
    else:
        try:
            size = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be (width, height), got {value!r}") from None
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{name} must be two positive integers (width, height), got {value!r}")
    if multiple > 1 and (size[0] % multiple or size[1] % multiple):
        raise ValueError(f"{name} {size[0]}x{size[1]} must have width and height divisible by {multiple}")
    return size  # type: ignore[return-value]
