"""`python -m bevanet_core.serving.params > config/segmentation.yaml` writes the node's defaults;
with `--markdown`, the README's parameter table."""

import sys

from .render import params_markdown, params_yaml

print(params_markdown() if "--markdown" in sys.argv[1:] else params_yaml(), end="")
