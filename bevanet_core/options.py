"""The runtime's choices by name, importable without torch: what the node's parameter spec, its
`--help` and the launch arguments list. The modules that implement them import these names from
here, so there is one definition of each (`test/test_models.py` checks the network names
against the registry).
"""

from __future__ import annotations

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
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
# defaults of bevanet_core.runtime.SegmenterConfig that are also node parameters
DEFAULT_BACKEND = "auto"
DEFAULT_DEVICE = "cpu"
DEFAULT_PRECISION = "fp32"
DEFAULT_RESIZE = "stretch"
DEFAULT_UPSAMPLE = "logits"
