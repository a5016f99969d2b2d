"""bevanet_core.options: the runtime's choices without torch, so that the node's parameter spec
and `--help` load fast; its network names are the registry's."""

from __future__ import annotations

import subprocess
import sys

from bevanet_core import options
from bevanet_core.models import list_models


def test_network_names_are_the_registry():
    assert list(options.SEGMENTATION_MODEL_NAMES) == list_models()


def test_parameter_spec_loads_without_torch():
    code = (
        "import sys, bevanet_core.serving.params, bevanet_core.serving.launch_plan; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr
