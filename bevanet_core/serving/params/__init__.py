"""The segmentation node's parameters, plain Python (no ROS): the table of specs (`spec.py`), the
checked values (`settings.py`: `validate_value`, `NodeSettings`) and the table as text
(`render.py`: the defaults file, the README's table, `--help`).

    python -m bevanet_core.serving.params > config/segmentation.yaml   # the defaults
    python -m bevanet_core.serving.params --markdown                   # the README's table
"""

from .render import node_help, params_markdown, params_yaml
from .settings import NodeSettings, ParameterError, reload_needed, thresholds_from_settings, validate_value
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
    ParamSpec,
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
