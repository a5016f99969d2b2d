"""The segmentation node's parameters, plain Python (no ROS): the table of specs, the checked
values and the table as text (`spec.py`).

    python -m bevanet_core.serving.params > config/segmentation.yaml   # the defaults
    python -m bevanet_core.serving.params --markdown                   # the README's table
"""

from .spec import (
    DEFAULT_WEIGHTS_VARIANT,
    HEALTH_PARAMETERS,
    INPUT_QOS,
    MAX_INPUT_SIDE,
    OUTPUT_QOS,
    PARAMS,
    RUNTIME_PARAMS,
    SPECS,
    TRANSPORTS,
    VARIANTS,
    NodeSettings,
    ParameterError,
    ParamSpec,
    node_help,
    params_markdown,
    params_yaml,
    reload_needed,
    thresholds_from_settings,
    validate_value,
)

__all__ = [
    "DEFAULT_WEIGHTS_VARIANT",
    "HEALTH_PARAMETERS",
    "INPUT_QOS",
    "MAX_INPUT_SIDE",
    "OUTPUT_QOS",
    "PARAMS",
    "RUNTIME_PARAMS",
    "SPECS",
    "TRANSPORTS",
    "VARIANTS",
    "NodeSettings",
    "ParamSpec",
    "ParameterError",
    "node_help",
    "params_markdown",
    "params_yaml",
    "reload_needed",
    "thresholds_from_settings",
    "validate_value",
]
