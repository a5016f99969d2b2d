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
    code = "import sys, bevanet_ros.params, bevanet_ros.launch_plan; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr


def test_one_size_parser_for_every_tool():
    import pytest

    from bevanet_core.bags import sources
    from bevanet_core.imaging import geometry
    from bevanet_ros import launch_plan

    assert options.parse_size(" 640X480 ") == (640, 480) == options.parse_size([640, 480])
    assert geometry.parse_size is options.parse_size
    assert launch_plan.parse_input_size("640x480") == sources.parse_size("640x480") == (640, 480)
    for bad, words in [
        ("640", "must look like WxH"),
        ("1x2x3", "must look like WxH"),
        ("axb", "must look like WxH"),
        ("0x360", "two positive integers"),
    ]:
        with pytest.raises(ValueError, match=words):
            options.parse_size(bad)
    with pytest.raises(ValueError, match="divisible by 8"):
        options.parse_size("644x480", multiple=8)
    with pytest.raises(ValueError, match="launch argument 'input_size' must look like WxH"):
        launch_plan.parse_input_size("640")
    with pytest.raises(sources.SourceError, match="size must look like WxH"):
        sources.parse_size("12")
    assert sources.parse_size(None) is None
